// The safetensors format (https://github.com/huggingface/safetensors), written byte-for-byte the way the
// reference Rust/Python library writes it, so that weights and masks move between ticketlab and PyTorch:
//
//   u64 little-endian N | N bytes of JSON header, space-padded to a multiple of 8 | raw little-endian data
//
// Header: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}, with
// offsets relative to the start of the data section.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { writeFileAtomic, writeFileAtomicSync } from './atomic.js';

/** Element types a {@link HostTensor} can hold (and that we write). */
export type HostDtype = 'F32' | 'F64' | 'I32' | 'U32' | 'U8' | 'I64';

/** Element types we can read; the extra ones are widened on load (see {@link decodeSafetensors}). */
export type SafetensorsDtype = HostDtype | 'F16' | 'BF16' | 'BOOL' | 'I8' | 'I16' | 'U16';

interface HostArrays {
  F32: Float32Array;
  F64: Float64Array;
  I32: Int32Array;
  U32: Uint32Array;
  U8: Uint8Array;
  I64: BigInt64Array;
}

/** A tensor in host memory whose typed array matches its dtype. Row-major (C order), like safetensors. */
export type HostTensorOf<D extends HostDtype> = { dtype: D; shape: number[]; data: HostArrays[D] };
export type HostTensor = { [D in HostDtype]: HostTensorOf<D> }[HostDtype];

export interface SafetensorsContents {
  tensors: Record<string, HostTensor>;
  metadata: Record<string, string>;
  /** The dtype each tensor had in the file (differs from `tensors[name].dtype` when widened on load). */
  sourceDtypes: Record<string, SafetensorsDtype>;
}

export interface TensorHeaderEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** [begin, end) byte offsets relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  tensors: Record<string, TensorHeaderEntry>;
  metadata: Record<string, string>;
  /** Bytes before the data section: 8 + header length. */
  dataStart: number;
  /** Length of the data section the header describes. */
  dataLength: number;
}

export interface DecodeOptions {
  /**
   * How I64 tensors (PyTorch's `num_batches_tracked`, index tensors) come back: `'bigint'` (default) as a
   * lossless BigInt64Array, `'i32-if-safe'` as an I32 tensor when every value fits in int32, else still
   * as BigInt64Array.
   */
  int64?: 'bigint' | 'i32-if-safe';
}

/** One-line error naming the file and, where one is to blame, the tensor. */
export class SafetensorsError extends Error {
  readonly file: string;
  readonly tensor: string | undefined;
  constructor(file: string, tensor: string | undefined, detail: string) {
    // Names may contain anything; JSON quoting keeps a name with a newline from breaking the line.
    super(`${file}: ${tensor === undefined ? '' : `tensor ${JSON.stringify(tensor)}: `}${detail}`);
    this.name = 'SafetensorsError';
    this.file = file;
    this.tensor = tensor;
  }
}

const METADATA_KEY = '__metadata__';
// Same cap as the reference implementation: a larger "length" is a corrupt or foreign file, and trusting
// it would mean allocating gigabytes before failing.
const MAX_HEADER_BYTES = 100_000_000;

const ELEMENT_BYTES: Record<SafetensorsDtype, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
};

// Position in the reference library's Dtype enum, which is ordered by alignment. The writer sorts by
// this descending so every tensor starts at a multiple of its own element size.
const DTYPE_RANK: Record<SafetensorsDtype, number> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  I16: 5,
  U16: 6,
  F16: 7,
  BF16: 8,
  I32: 9,
  U32: 10,
  F32: 11,
  F64: 12,
  I64: 13,
};

const ARRAY_CTOR: { [D in HostDtype]: { new (length: number): HostArrays[D]; name: string } } = {
  F32: Float32Array,
  F64: Float64Array,
  I32: Int32Array,
  U32: Uint32Array,
  U8: Uint8Array,
  I64: BigInt64Array,
};

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isSafetensorsDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ELEMENT_BYTES, s);
}

function isHostDtype(s: unknown): s is HostDtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ARRAY_CTOR, s);
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/** Number of elements of a shape; 1 for a scalar (`[]`). Null when it is not a safe integer. */
function elementCount(shape: readonly number[]): number | null {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

// Rust orders String by UTF-8 bytes; JS `<` compares UTF-16 units, which disagree for characters above
// U+FFFF versus U+E000..U+FFFF. Byte order keeps our files identical to the library's.
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

// ---------------------------------------------------------------------------------------------------
// Encoding

/**
 * Serialises tensors into the safetensors byte layout. Tensors are laid out like the reference
 * library does (descending alignment, then name), so the header is byte-identical to what
 * `safetensors.torch.save_file` writes for the same tensors (metadata keys sorted).
 */
export function encodeSafetensors(
  tensors: Readonly<Record<string, HostTensor>>,
  metadata?: Readonly<Record<string, string>>,
  file = '<buffer>',
): Uint8Array {
  const entries = Object.entries(tensors);
  for (const [name, t] of entries) checkHostTensor(file, name, t);
  entries.sort(([an, at], [bn, bt]) => DTYPE_RANK[bt.dtype] - DTYPE_RANK[at.dtype] || compareUtf8(an, bn));

  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort(compareUtf8);
    const body = keys.map((k) => {
      const v = metadata[k];
      if (typeof v !== 'string') throw new SafetensorsError(file, undefined, `metadata ${JSON.stringify(k)} is not a string`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${body.join(',')}}`);
  }
  let offset = 0;
  for (const [name, t] of entries) {
    const end = offset + t.data.byteLength;
    // Built by hand, not via JSON.stringify of an object: JS objects put integer-like keys ("0", "1")
    // first whatever the insertion order, which would break the reference ordering.
    parts.push(
      `${JSON.stringify(name)}:{"dtype":${JSON.stringify(t.dtype)},"shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const headerLength = Math.ceil(json.length / 8) * 8;

  const out = new Uint8Array(8 + headerLength + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let pos = 8 + headerLength;
  for (const [, t] of entries) {
    writeLittleEndian(out, pos, t);
    pos += t.data.byteLength;
  }
  return out;
}

function checkHostTensor(file: string, name: string, t: HostTensor): void {
  if (name === METADATA_KEY) throw new SafetensorsError(file, name, 'name is reserved for metadata');
  if (!isHostDtype(t.dtype)) throw new SafetensorsError(file, name, `cannot write dtype ${String(t.dtype)}`);
  if (!Array.isArray(t.shape) || !t.shape.every(isCount)) {
    throw new SafetensorsError(file, name, `shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
  }
  const ctor = ARRAY_CTOR[t.dtype];
  if (!(t.data instanceof ctor)) {
    throw new SafetensorsError(file, name, `dtype ${t.dtype} needs a ${ctor.name}, got ${t.data.constructor.name}`);
  }
  const n = elementCount(t.shape);
  if (n !== t.data.length) {
    throw new SafetensorsError(file, name, `shape ${shapeText(t.shape)} has ${n ?? 'too many'} elements but data has ${t.data.length}`);
  }
}

function writeLittleEndian(out: Uint8Array, pos: number, t: HostTensor): void {
  const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (HOST_LITTLE_ENDIAN || ELEMENT_BYTES[t.dtype] === 1) {
    out.set(src, pos);
    return;
  }
  const size = ELEMENT_BYTES[t.dtype];
  for (let i = 0; i < src.length; i += size) {
    for (let b = 0; b < size; b++) out[pos + i + b] = src[i + size - 1 - b];
  }
}

// ---------------------------------------------------------------------------------------------------
// Header parsing and validation

/**
 * Parses and validates the header from the first bytes of a file. `totalLength` is the whole file's
 * length, so the data section can be checked without being read.
 */
function parseHeader(file: string, head: Uint8Array, totalLength: number): SafetensorsHeader {
  if (totalLength < 8) throw new SafetensorsError(file, undefined, `file is ${totalLength} bytes, too short for a safetensors header`);
  const n = new DataView(head.buffer, head.byteOffset, head.byteLength).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(file, undefined, `header length ${n} exceeds ${MAX_HEADER_BYTES} bytes (corrupt or not safetensors)`);
  }
  const headerLength = Number(n);
  if (8 + headerLength > totalLength) {
    throw new SafetensorsError(file, undefined, `header length ${headerLength} runs past the end of the ${totalLength}-byte file`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(8, 8 + headerLength));
  } catch {
    throw new SafetensorsError(file, undefined, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw new SafetensorsError(file, undefined, 'header does not start with "{"');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new SafetensorsError(file, undefined, `header is not valid JSON: ${reason}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new SafetensorsError(file, undefined, 'header is not a JSON object');
  }

  let metadata: Record<string, string> = {};
  const found: [string, TensorHeaderEntry][] = [];
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(file, value);
    } else {
      found.push([name, parseEntry(file, name, value)]);
    }
  }

  // Offsets must tile the data section exactly: no gaps (hidden payloads), no overlaps (aliasing), no
  // bytes past the last tensor. Sorting by offset, not name, accepts files from older writers.
  found.sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  const dataLength = totalLength - 8 - headerLength;
  let expected = 0;
  for (const [name, e] of found) {
    const [begin, end] = e.dataOffsets;
    if (begin !== expected || end < begin) {
      throw new SafetensorsError(file, name, `data_offsets [${begin},${end}] are not contiguous (expected to begin at ${expected})`);
    }
    if (end > dataLength) {
      throw new SafetensorsError(file, name, `data_offsets [${begin},${end}] run past the ${dataLength}-byte data section (truncated file?)`);
    }
    const count = elementCount(e.shape);
    const need = count === null ? null : count * ELEMENT_BYTES[e.dtype];
    if (need === null || !Number.isSafeInteger(need) || need !== end - begin) {
      throw new SafetensorsError(
        file,
        name,
        `shape ${shapeText(e.shape)} of ${e.dtype} needs ${need ?? 'too many'} bytes but data_offsets [${begin},${end}] hold ${end - begin}`,
      );
    }
    expected = end;
  }
  if (expected !== dataLength) {
    throw new SafetensorsError(file, undefined, `tensors cover ${expected} bytes but the data section has ${dataLength}`);
  }
  return { tensors: Object.fromEntries(found), metadata, dataStart: 8 + headerLength, dataLength };
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new SafetensorsError(file, undefined, '__metadata__ is not an object');
  }
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new SafetensorsError(file, undefined, `__metadata__ ${JSON.stringify(k)} is not a string`);
    out.push([k, v]);
  }
  return Object.fromEntries(out);
}

function parseEntry(file: string, name: string, value: unknown): TensorHeaderEntry {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SafetensorsError(file, name, 'header entry is not an object');
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isSafetensorsDtype(dtype)) throw new SafetensorsError(file, name, `unsupported dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new SafetensorsError(file, name, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw new SafetensorsError(file, name, `data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
  }
  return { dtype, shape: shape as number[], dataOffsets: [offsets[0] as number, offsets[1] as number] };
}

// ---------------------------------------------------------------------------------------------------
// Decoding tensors

/**
 * Parses a whole safetensors buffer. Widening on load: F16 and BF16 become F32, BOOL becomes U8 (0/1),
 * I8/I16/U16 become I32; I64 follows `options.int64`. U64, F8 and complex dtypes are rejected.
 * Data is copied, so the result does not keep `bytes` alive and is always aligned.
 */
export function decodeSafetensors(bytes: Uint8Array, file = '<buffer>', options: DecodeOptions = {}): SafetensorsContents {
  const header = parseHeader(file, bytes, bytes.length);
  const tensors: [string, HostTensor][] = [];
  const sourceDtypes: [string, SafetensorsDtype][] = [];
  for (const [name, e] of Object.entries(header.tensors)) {
    const begin = header.dataStart + e.dataOffsets[0];
    const raw = bytes.subarray(begin, header.dataStart + e.dataOffsets[1]);
    tensors.push([name, convert(e, raw, options)]);
    sourceDtypes.push([name, e.dtype]);
  }
  return { tensors: Object.fromEntries(tensors), metadata: header.metadata, sourceDtypes: Object.fromEntries(sourceDtypes) };
}

/** A fresh, 8-byte-aligned copy of little-endian element data in host byte order. */
function hostOrderCopy(raw: Uint8Array, size: number): ArrayBuffer {
  const copy = new Uint8Array(raw.length);
  if (HOST_LITTLE_ENDIAN || size === 1) {
    copy.set(raw);
  } else {
    for (let i = 0; i < raw.length; i += size) {
      for (let b = 0; b < size; b++) copy[i + b] = raw[i + size - 1 - b];
    }
  }
  return copy.buffer;
}

function convert(e: TensorHeaderEntry, raw: Uint8Array, options: DecodeOptions): HostTensor {
  const shape = [...e.shape];
  const buf = hostOrderCopy(raw, ELEMENT_BYTES[e.dtype]);
  switch (e.dtype) {
    case 'F32':
      return { dtype: 'F32', shape, data: new Float32Array(buf) };
    case 'F64':
      return { dtype: 'F64', shape, data: new Float64Array(buf) };
    case 'I32':
      return { dtype: 'I32', shape, data: new Int32Array(buf) };
    case 'U32':
      return { dtype: 'U32', shape, data: new Uint32Array(buf) };
    case 'U8':
      return { dtype: 'U8', shape, data: new Uint8Array(buf) };
    case 'BOOL': {
      // Any non-zero byte is true; normalising keeps masks strictly 0/1.
      const src = new Uint8Array(buf);
      const data = new Uint8Array(src.length);
      for (let i = 0; i < src.length; i++) data[i] = src[i] === 0 ? 0 : 1;
      return { dtype: 'U8', shape, data };
    }
    case 'I8':
      return { dtype: 'I32', shape, data: Int32Array.from(new Int8Array(buf)) };
    case 'I16':
      return { dtype: 'I32', shape, data: Int32Array.from(new Int16Array(buf)) };
    case 'U16':
      return { dtype: 'I32', shape, data: Int32Array.from(new Uint16Array(buf)) };
    case 'F16':
      return { dtype: 'F32', shape, data: f16ToF32(new Uint16Array(buf)) };
    case 'BF16': {
      // bf16 is the top half of an f32, so shifting the bits is exact, NaN payloads included.
      const src = new Uint16Array(buf);
      const bits = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
      return { dtype: 'F32', shape, data: new Float32Array(bits.buffer) };
    }
    case 'I64': {
      const data = new BigInt64Array(buf);
      if (options.int64 === 'i32-if-safe') {
        const narrow = narrowToInt32(data);
        if (narrow !== null) return { dtype: 'I32', shape, data: narrow };
      }
      return { dtype: 'I64', shape, data };
    }
  }
}

function narrowToInt32(data: BigInt64Array): Int32Array | null {
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < -2147483648n || v > 2147483647n) return null;
    out[i] = Number(v);
  }
  return out;
}

let f16Table: Float32Array | undefined;

/** IEEE binary16 bit patterns to float32 (exact: every f16 value is representable in f32). */
export function f16ToF32(src: Uint16Array): Float32Array {
  // A 256 KiB table beats per-element bit twiddling once checkpoints reach millions of weights.
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToNumber(h);
  }
  const table = f16Table;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// ---------------------------------------------------------------------------------------------------
// Files

/** Writes tensors to `file` atomically (a crash leaves the old file or the new one, never a mix). */
export async function saveSafetensors(
  file: string,
  tensors: Readonly<Record<string, HostTensor>>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata, file));
}

export function saveSafetensorsSync(
  file: string,
  tensors: Readonly<Record<string, HostTensor>>,
  metadata?: Readonly<Record<string, string>>,
): void {
  writeFileAtomicSync(file, encodeSafetensors(tensors, metadata, file));
}

/**
 * A read error as one line saying what is wrong with `file` (Node's own, "ENOENT: no such file or
 * directory, open 'level_0/init.safetensors'", is an errno code first).
 */
function readError(file: string, e: unknown): SafetensorsError {
  const code = (e as NodeJS.ErrnoException).code;
  const detail = code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a folder, not a file' : `cannot be read (${code ?? (e as Error).message.split('\n')[0]})`;
  return new SafetensorsError(file, undefined, detail);
}

export async function loadSafetensors(file: string, options: DecodeOptions = {}): Promise<SafetensorsContents> {
  const bytes = await fsp.readFile(file).catch((e: unknown) => {
    throw readError(file, e);
  });
  return decodeSafetensors(bytes, file, options);
}

export function loadSafetensorsSync(file: string, options: DecodeOptions = {}): SafetensorsContents {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw readError(file, e);
  }
  return decodeSafetensors(bytes, file, options);
}

/** Reads and validates only the header (names, dtypes, shapes), without loading tensor data. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const handle = await fsp.open(file, 'r').catch((e: unknown) => {
    throw readError(file, e);
  });
  try {
    const { size } = await handle.stat();
    const prefix = Buffer.alloc(Math.min(8, size));
    await handle.read(prefix, 0, prefix.length, 0);
    if (size < 8) return parseHeader(file, prefix, size);
    const n = prefix.readBigUInt64LE(0);
    // Let parseHeader produce the error for absurd lengths instead of allocating them.
    const want = n > BigInt(size - 8) ? 0 : Number(n);
    const head = Buffer.alloc(8 + want);
    await handle.read(head, 0, head.length, 0);
    if (want === 0 && n !== 0n) return parseHeader(file, prefix, size);
    return parseHeader(file, head, size);
  } finally {
    await handle.close();
  }
}

// TensorFlow.js weight manifests (`*-weights_manifest.json` + `.bin` shards), read without TF.js.
//
// A manifest is a list of groups. Each group's shards (`paths`, relative to the manifest) concatenate
// into one byte buffer holding the group's weights back to back, in the order listed. A weight is
// stored as its dtype (float32 / int32, little-endian) unless it has a `quantization` entry: then each
// element is a uint8 or uint16 q (or a float16) and the value is q * scale + min (int32 weights round
// it), exactly as TF.js's decodeWeights does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { f16ToF32, type HostTensorOf } from './safetensors.js';

export interface TfjsQuantization {
  dtype: 'uint8' | 'uint16' | 'float16';
  scale?: number;
  min?: number;
}

export interface TfjsWeightSpec {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  quantization?: TfjsQuantization;
}

export interface TfjsWeightGroup {
  paths: string[];
  weights: TfjsWeightSpec[];
}

export type TfjsWeight = HostTensorOf<'F32'> | HostTensorOf<'I32'>;

/** One-line error naming the manifest and, where one is to blame, the weight. */
export class TfjsWeightsError extends Error {
  constructor(file: string, weight: string | undefined, detail: string) {
    super(`${file}: ${weight === undefined ? '' : `weight ${JSON.stringify(weight)}: `}${detail}`);
    this.name = 'TfjsWeightsError';
  }
}

const STORED_BYTES: Record<string, number> = { float32: 4, int32: 4, uint8: 1, uint16: 2, float16: 2 };

function checkSpec(file: string, w: unknown): TfjsWeightSpec {
  const o = w as Partial<TfjsWeightSpec> | null;
  const name = typeof o?.name === 'string' ? o.name : undefined;
  if (!o || name === undefined) throw new TfjsWeightsError(file, undefined, 'a weight entry has no name');
  if (!Array.isArray(o.shape) || !o.shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new TfjsWeightsError(file, name, `bad shape ${JSON.stringify(o.shape)}`);
  }
  if (o.dtype !== 'float32' && o.dtype !== 'int32') throw new TfjsWeightsError(file, name, `unsupported dtype ${JSON.stringify(o.dtype)}`);
  const q = o.quantization;
  if (q !== undefined && !['uint8', 'uint16', 'float16'].includes(q.dtype)) {
    throw new TfjsWeightsError(file, name, `unsupported quantization ${JSON.stringify(q)}`);
  }
  if (q && q.dtype !== 'float16' && !(Number.isFinite(q.scale) && Number.isFinite(q.min))) {
    throw new TfjsWeightsError(file, name, `quantization ${JSON.stringify(q)} needs a finite scale and min`);
  }
  return o as TfjsWeightSpec;
}

/** Decodes one weight from `bytes` at `offset`; returns it and the number of bytes it took. */
function decodeWeight(file: string, spec: TfjsWeightSpec, bytes: Uint8Array, offset: number): [TfjsWeight, number] {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const stored = spec.quantization?.dtype ?? spec.dtype;
  const len = n * STORED_BYTES[stored];
  if (offset + len > bytes.length) {
    throw new TfjsWeightsError(file, spec.name, `needs bytes [${offset}, ${offset + len}) but the shards hold ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, len);
  const halves = stored === 'float16' ? f16ToF32(new Uint16Array(bytes.slice(offset, offset + len).buffer)) : null;
  const raw = (i: number): number => {
    switch (stored) {
      case 'uint8':
        return view.getUint8(i);
      case 'uint16':
        return view.getUint16(2 * i, true);
      case 'float16':
        return halves![i];
      case 'int32':
        return view.getInt32(4 * i, true);
      default:
        return view.getFloat32(4 * i, true);
    }
  };
  const q = spec.quantization;
  const value = q && q.dtype !== 'float16' ? (i: number) => raw(i) * q.scale! + q.min! : raw;
  if (spec.dtype === 'int32') {
    const data = new Int32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.round(value(i));
    return [{ dtype: 'I32', shape: [...spec.shape], data }, len];
  }
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = value(i);
  return [{ dtype: 'F32', shape: [...spec.shape], data }, len];
}

/** Parses a manifest's JSON (already read) and decodes every weight from the shards it names. */
export function decodeTfjsWeights(file: string, manifest: unknown, readShard: (rel: string) => Uint8Array): Map<string, TfjsWeight> {
  if (!Array.isArray(manifest)) throw new TfjsWeightsError(file, undefined, 'a weights manifest must be a JSON array of groups');
  const out = new Map<string, TfjsWeight>();
  for (const g of manifest as Partial<TfjsWeightGroup>[]) {
    if (!Array.isArray(g?.paths) || !Array.isArray(g?.weights)) throw new TfjsWeightsError(file, undefined, 'a group lacks "paths" or "weights"');
    const shards = g.paths.map((p) => readShard(String(p)));
    const bytes = new Uint8Array(shards.reduce((a, s) => a + s.length, 0));
    let at = 0;
    for (const s of shards) {
      bytes.set(s, at);
      at += s.length;
    }
    let offset = 0;
    for (const w of g.weights) {
      const spec = checkSpec(file, w);
      if (out.has(spec.name)) throw new TfjsWeightsError(file, spec.name, 'appears twice');
      const [t, len] = decodeWeight(file, spec, bytes, offset);
      out.set(spec.name, t);
      offset += len;
    }
    if (offset !== bytes.length) throw new TfjsWeightsError(file, undefined, `shards ${g.paths.join(', ')} hold ${bytes.length} bytes, the weights ${offset}`);
  }
  return out;
}

/** Reads a `*-weights_manifest.json` and its shards (resolved next to it). */
export function readTfjsWeights(manifestFile: string): Map<string, TfjsWeight> {
  let manifest: unknown;
  try {
    manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
  } catch (e) {
    throw new TfjsWeightsError(manifestFile, undefined, `cannot read the manifest: ${e instanceof Error ? e.message : String(e)}`);
  }
  const dir = path.dirname(manifestFile);
  return decodeTfjsWeights(manifestFile, manifest, (rel) => {
    const shard = path.join(dir, rel);
    try {
      return new Uint8Array(fs.readFileSync(shard));
    } catch {
      throw new TfjsWeightsError(manifestFile, undefined, `cannot read shard ${shard}`);
    }
  });
}

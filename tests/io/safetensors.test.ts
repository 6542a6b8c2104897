import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  decodeSafetensors,
  encodeSafetensors,
  f16ToF32,
  loadSafetensors,
  readSafetensorsHeader,
  saveSafetensors,
  SafetensorsError,
  type HostTensor,
} from '../../src/io/safetensors.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-st-'));
}

function ascii(s: string): number[] {
  return [...Buffer.from(s, 'utf8')];
}

function u64le(n: number): number[] {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return [...b];
}

function f32le(...xs: number[]): number[] {
  return [...new Uint8Array(new Float32Array(xs).buffer)];
}

/** Assembles a file by the spec: u64 LE length, header padded with spaces to 8, then data. */
function assemble(header: string, data: number[]): Uint8Array {
  const h = ascii(header);
  while (h.length % 8 !== 0) h.push(0x20);
  return Uint8Array.from([...u64le(h.length), ...h, ...data]);
}

function bytesOf(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

describe('safetensors layout matches the reference library byte for byte', () => {
  // Expected bytes below are the reference implementation's own serialisation tests.
  it('one F32 tensor whose header needs no padding', () => {
    const out = encodeSafetensors({ 'attn.0': { dtype: 'F32', shape: [1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) } });
    const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(header.length).toBe(64);
    expect([...out]).toEqual([...u64le(64), ...ascii(header), ...f32le(0, 1, 2, 3, 4, 5)]);
  });

  it('pads the header with spaces so data starts 8-aligned', () => {
    const out = encodeSafetensors({ attn0: { dtype: 'F32', shape: [1, 1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) } });
    const header = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
    expect([...out]).toEqual([...u64le(72), ...ascii(header), ...ascii(' '.repeat(72 - header.length)), ...f32le(0, 1, 2, 3, 4, 5)]);
  });

  it('empty file, with and without metadata', () => {
    expect([...encodeSafetensors({})]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    expect([...encodeSafetensors({}, { framework: 'pt' })]).toEqual([
      ...u64le(40),
      ...ascii('{"__metadata__":{"framework":"pt"}}'),
      ...ascii('     '),
    ]);
  });

  it('orders tensors by descending alignment, then by name, metadata first', () => {
    const out = encodeSafetensors(
      {
        b_mask: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 0, 1]) },
        '10': { dtype: 'F32', shape: [], data: new Float32Array([1]) },
        '2': { dtype: 'F32', shape: [1], data: new Float32Array([2]) },
        steps: { dtype: 'I64', shape: [], data: new BigInt64Array([7n]) },
        a_idx: { dtype: 'I32', shape: [2], data: new Int32Array([-1, 5]) },
      },
      { z: '1', a: '2' },
    );
    const n = Number(Buffer.from(out.subarray(0, 8)).readBigUInt64LE(0));
    const header = Buffer.from(out.subarray(8, 8 + n)).toString('utf8').trimEnd();
    expect(header).toBe(
      '{"__metadata__":{"a":"2","z":"1"},' +
        '"steps":{"dtype":"I64","shape":[],"data_offsets":[0,8]},' +
        '"10":{"dtype":"F32","shape":[],"data_offsets":[8,12]},' +
        '"2":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},' +
        '"a_idx":{"dtype":"I32","shape":[2],"data_offsets":[16,24]},' +
        '"b_mask":{"dtype":"U8","shape":[3],"data_offsets":[24,27]}}',
    );
    expect(out.length).toBe(8 + n + 27);
  });
});

describe('decoding a hand-assembled file', () => {
  it('reads every supported dtype, widening F16/BF16/BOOL/small ints', () => {
    const entries: [string, string, number[], number[]][] = [
      // name, dtype, shape, little-endian bytes
      ['i64', 'I64', [2], [...u64le(3), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
      ['f64', 'F64', [1], [...new Uint8Array(new Float64Array([Math.PI]).buffer)]],
      ['f32', 'F32', [2, 1], f32le(1.5, -2)],
      ['u32', 'U32', [1], [0xff, 0xff, 0xff, 0xff]],
      ['i32', 'I32', [], [0xfe, 0xff, 0xff, 0xff]],
      // 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), -0, inf, nan
      ['f16', 'F16', [7], [0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x80, 0x00, 0x7c, 0x00, 0x7e]],
      // 1.0, -3.0 in bfloat16
      ['bf16', 'BF16', [2], [0x80, 0x3f, 0x40, 0xc0]],
      ['i16', 'I16', [1], [0x00, 0x80]],
      ['u16', 'U16', [1], [0x00, 0x80]],
      ['i8', 'I8', [2], [0xff, 0x7f]],
      ['u8', 'U8', [2], [0, 255]],
      ['bool', 'BOOL', [3], [1, 0, 2]],
      ['empty', 'F32', [0, 3], []],
    ];
    let offset = 0;
    const parts: string[] = ['"__metadata__":{"format":"pt"}'];
    const data: number[] = [];
    for (const [name, dtype, shape, bytes] of entries) {
      parts.push(`"${name}":{"dtype":"${dtype}","shape":${JSON.stringify(shape)},"data_offsets":[${offset},${offset + bytes.length}]}`);
      offset += bytes.length;
      data.push(...bytes);
    }
    const file = assemble(`{${parts.join(',')}}`, data);
    const { tensors: t, metadata, sourceDtypes } = decodeSafetensors(file);
    expect(metadata).toEqual({ format: 'pt' });
    expect(t.i64).toEqual({ dtype: 'I64', shape: [2], data: new BigInt64Array([3n, -1n]) });
    expect(t.f64.data[0]).toBe(Math.PI);
    expect(t.f32).toEqual({ dtype: 'F32', shape: [2, 1], data: new Float32Array([1.5, -2]) });
    expect(t.u32.data[0]).toBe(4294967295);
    expect(t.i32).toEqual({ dtype: 'I32', shape: [], data: new Int32Array([-2]) });
    expect(t.f16.dtype).toBe('F32');
    expect([...t.f16.data].slice(0, 6)).toEqual([1, -2, 65504, 2 ** -24, -0, Infinity]);
    expect(Object.is(t.f16.data[4], -0)).toBe(true);
    expect(Number.isNaN(t.f16.data[6])).toBe(true);
    expect(t.bf16).toEqual({ dtype: 'F32', shape: [2], data: new Float32Array([1, -3]) });
    expect(t.i16).toEqual({ dtype: 'I32', shape: [1], data: new Int32Array([-32768]) });
    expect(t.u16).toEqual({ dtype: 'I32', shape: [1], data: new Int32Array([32768]) });
    expect(t.i8).toEqual({ dtype: 'I32', shape: [2], data: new Int32Array([-1, 127]) });
    expect(t.u8).toEqual({ dtype: 'U8', shape: [2], data: new Uint8Array([0, 255]) });
    expect(t.bool).toEqual({ dtype: 'U8', shape: [3], data: new Uint8Array([1, 0, 1]) });
    expect(t.empty).toEqual({ dtype: 'F32', shape: [0, 3], data: new Float32Array(0) });
    expect(sourceDtypes.f16).toBe('F16');
    expect(sourceDtypes.bool).toBe('BOOL');
  });

  it('accepts tensors listed out of offset order (older writers) and a header without metadata', () => {
    const header = '{"b":{"dtype":"U8","shape":[1],"data_offsets":[4,5]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}';
    const { tensors, metadata } = decodeSafetensors(assemble(header, [...f32le(9), 42]));
    expect(metadata).toEqual({});
    expect(tensors.a.data[0]).toBe(9);
    expect(tensors.b.data[0]).toBe(42);
  });

  it('narrows I64 to I32 only when every value fits', () => {
    const fits = encodeSafetensors({ n: { dtype: 'I64', shape: [2], data: new BigInt64Array([5n, -3n]) } });
    expect(decodeSafetensors(fits, 'x', { int64: 'i32-if-safe' }).tensors.n).toEqual({ dtype: 'I32', shape: [2], data: new Int32Array([5, -3]) });
    const big = encodeSafetensors({ n: { dtype: 'I64', shape: [1], data: new BigInt64Array([1n << 40n]) } });
    expect(decodeSafetensors(big, 'x', { int64: 'i32-if-safe' }).tensors.n.dtype).toBe('I64');
  });

  it('f16 conversion is exact for every bit pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = f16ToF32(all);
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const exp = (h >> 10) & 31;
      const frac = h & 1023;
      const v = f[h];
      const sign = (h & 0x8000) !== 0;
      const mag = exp === 0 ? frac * 2 ** -24 : exp === 31 ? (frac === 0 ? Infinity : NaN) : (1024 + frac) * 2 ** (exp - 25);
      if (!Object.is(v, sign && !Number.isNaN(mag) ? -mag : mag)) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });
});

const hostTensorArb: fc.Arbitrary<HostTensor> = fc
  .tuple(
    fc.constantFrom('F32', 'F64', 'I32', 'U32', 'U8', 'I64'),
    // [] is a scalar; zeros give empty tensors.
    fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }),
  )
  .chain(([dtype, shape]): fc.Arbitrary<HostTensor> => {
    const n = shape.reduce((a, b) => a * b, 1);
    const len = { minLength: n, maxLength: n };
    switch (dtype) {
      case 'F32':
        return fc.float32Array(len).map((data) => ({ dtype, shape, data }));
      case 'F64':
        return fc.float64Array(len).map((data) => ({ dtype, shape, data }));
      case 'I32':
        return fc.int32Array(len).map((data) => ({ dtype, shape, data }));
      case 'U32':
        return fc.uint32Array(len).map((data) => ({ dtype, shape, data }));
      case 'U8':
        return fc.uint8Array(len).map((data) => ({ dtype, shape, data }));
      case 'I64':
        return fc.bigInt64Array(len).map((data) => ({ dtype, shape, data }));
    }
  });

const nameArb = fc.string({ unit: 'grapheme', maxLength: 12 }).filter((s) => s !== '__metadata__');

describe('round trip (property)', () => {
  it('decode(encode(x)) == x, bit for bit, with aligned data', () => {
    fc.assert(
      fc.property(
        fc.dictionary(nameArb, hostTensorArb, { maxKeys: 6 }),
        fc.option(fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 8 }), fc.string({ unit: 'grapheme', maxLength: 8 }), { maxKeys: 3 }), {
          nil: undefined,
        }),
        (tensors, metadata) => {
          const bytes = encodeSafetensors(tensors, metadata);
          const n = Number(Buffer.from(bytes.subarray(0, 8)).readBigUInt64LE(0));
          expect(n % 8).toBe(0);
          const back = decodeSafetensors(bytes);
          expect(back.metadata).toEqual(metadata ?? {});
          expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(tensors).sort());
          const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8')) as Record<string, { data_offsets: number[] }>;
          for (const [name, t] of Object.entries(tensors)) {
            const b = back.tensors[name];
            expect(b.dtype).toBe(t.dtype);
            expect(b.shape).toEqual(t.shape);
            expect(bytesOf(b)).toEqual(bytesOf(t)); // bytes, so NaN payloads and -0 count too
            const start = 8 + n + header[name].data_offsets[0];
            expect(start % t.data.BYTES_PER_ELEMENT).toBe(0);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('encoding is deterministic whatever the insertion order', () => {
    fc.assert(
      fc.property(fc.dictionary(nameArb, hostTensorArb, { maxKeys: 5 }), (tensors) => {
        const reversed = Object.fromEntries(Object.entries(tensors).reverse());
        expect(encodeSafetensors(reversed)).toEqual(encodeSafetensors(tensors));
      }),
      { numRuns: 50 },
    );
  });

  it('writes views of larger buffers correctly (byteOffset respected)', () => {
    const big = new Float32Array([9, 1, 2, 3, 9]);
    const view = big.subarray(1, 4);
    const back = decodeSafetensors(encodeSafetensors({ w: { dtype: 'F32', shape: [3], data: view } }));
    expect([...back.tensors.w.data]).toEqual([1, 2, 3]);
  });
});

describe('files and errors', () => {
  it('save/load through the atomic writer, header-only read', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'deep', 'ckpt.safetensors');
    await saveSafetensors(file, { w: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } }, { epoch: '3' });
    expect(fs.readdirSync(path.dirname(file))).toEqual(['ckpt.safetensors']);
    const back = await loadSafetensors(file);
    expect(back.metadata).toEqual({ epoch: '3' });
    expect([...back.tensors.w.data]).toEqual([1, 2]);
    const header = await readSafetensorsHeader(file);
    expect(header.tensors.w).toEqual({ dtype: 'F32', shape: [2], dataOffsets: [0, 8] });
    expect(header.dataLength).toBe(8);
  });

  it('a missing file or a folder is a one-line SafetensorsError naming it, not an errno message', async () => {
    const dir = tmpDir();
    const missing = path.join(dir, 'init.safetensors');
    // Thunks, not promises: a promise made before its turn in the loop can reject with no handler yet,
    // which vitest counts as an unhandled rejection and fails the whole run on.
    const reads = [() => loadSafetensors(missing), () => readSafetensorsHeader(missing), () => loadSafetensors(dir)];
    for (const read of reads) {
      const e = await read().then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(SafetensorsError);
      expect([`${missing}: file not found`, `${dir}: is a folder, not a file`]).toContain((e as Error).message);
    }
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses to write inconsistent tensors, naming the tensor', () => {
    expect(() => encodeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }, undefined, 'out.st')).toThrow(
      /^out\.st: tensor "w": shape \[2,2\] has 4 elements but data has 3$/,
    );
    expect(() => encodeSafetensors({ w: { dtype: 'F32', shape: [1], data: new Float64Array(1) } as unknown as HostTensor })).toThrow(/tensor "w".*Float32Array/);
    expect(() => encodeSafetensors({ __metadata__: { dtype: 'U8', shape: [], data: new Uint8Array(1) } })).toThrow(/reserved/);
    expect(() => encodeSafetensors({ w: { dtype: 'U8', shape: [-1], data: new Uint8Array(0) } })).toThrow(/non-negative/);
  });

  const good = assemble('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[1],"data_offsets":[8,9]}}', [
    ...f32le(1, 2),
    7,
  ]);
  const corrupt: [string, Uint8Array, RegExp][] = [
    ['too short', Uint8Array.from([1, 2, 3]), /too short/],
    ['absurd header length', Uint8Array.from([...u64le(2 ** 40), ...ascii('{}')]), /header length .* exceeds/],
    ['header past end', Uint8Array.from([...u64le(64), ...ascii('{}      ')]), /runs past the end/],
    ['not JSON', assemble('{"a": nope}', []), /not valid JSON/],
    ['not an object', assemble('[1,2]', []), /does not start with "\{"/],
    ['unknown dtype', assemble('{"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}', [0]), /tensor "w": unsupported dtype "Q7"/],
    ['gap between tensors', assemble('{"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', [0, 0]), /tensor "w": data_offsets \[1,2\] are not contiguous/],
    ['shape/bytes mismatch', assemble('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', f32le(1, 2)), /tensor "w": shape \[3\] of F32 needs 12 bytes/],
    ['truncated data', good.subarray(0, good.length - 4), /tensor "a": data_offsets \[0,8\] run past|tensor "b"/],
    ['trailing bytes', Uint8Array.from([...good, 0, 0]), /tensors cover 9 bytes but the data section has 11/],
    ['bad shape', assemble('{"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}', [0]), /tensor "w": shape/],
    ['bad metadata', assemble('{"__metadata__":{"k":1}}', []), /__metadata__ "k" is not a string/],
  ];

  it.each(corrupt)('rejects %s with a one-line error naming the file', async (_label, bytes, pattern) => {
    const dir = tmpDir();
    const file = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(file, bytes);
    const err = await loadSafetensors(file).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SafetensorsError);
    const msg = (err as Error).message;
    expect(msg.startsWith(`${file}: `)).toBe(true);
    expect(msg).not.toContain('\n');
    expect(msg).toMatch(pattern);
    await expect(readSafetensorsHeader(file)).rejects.toThrow(SafetensorsError);
  });

  it('the original good buffer decodes', () => {
    expect(decodeSafetensors(good).tensors.b.data[0]).toBe(7);
  });
});

// Cross-check against the reference Python library when the machine happens to have it.
const hasPySafetensors = spawnSync('python3', ['-c', 'import safetensors.numpy, numpy'], { stdio: 'ignore' }).status === 0;

describe.skipIf(!hasPySafetensors)('cross-check with Python safetensors', () => {
  it('Python reads our file and writes the same bytes for the same tensors', () => {
    const dir = tmpDir();
    const ours = path.join(dir, 'ours.safetensors');
    const theirs = path.join(dir, 'theirs.safetensors');
    const tensors: Record<string, HostTensor> = {
      'conv1.weight': { dtype: 'F32', shape: [2, 1, 2, 2], data: Float32Array.from({ length: 8 }, (_, i) => i / 3) },
      'bn1.num_batches_tracked': { dtype: 'I64', shape: [], data: new BigInt64Array([12n]) },
      mask: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 0, 1]) },
      idx: { dtype: 'I32', shape: [2], data: new Int32Array([-4, 9]) },
      d: { dtype: 'F64', shape: [1], data: new Float64Array([1e-300]) },
    };
    fs.writeFileSync(ours, encodeSafetensors(tensors, { framework: 'ticketlab' }));
    const script = `
import sys, json, numpy as np
from safetensors.numpy import load_file, save_file
from safetensors import safe_open
t = load_file(sys.argv[1])
with safe_open(sys.argv[1], 'np') as f: meta = f.metadata()
save_file(t, sys.argv[2], metadata=meta)
print(json.dumps({k: [str(v.dtype), list(v.shape), v.ravel().tolist()] for k, v in t.items()}))
`;
    const out = JSON.parse(execFileSync('python3', ['-c', script, ours, theirs], { encoding: 'utf8' })) as Record<string, [string, number[], number[]]>;
    expect(out['conv1.weight'][2]).toEqual([...tensors['conv1.weight'].data]);
    expect(out['bn1.num_batches_tracked']).toEqual(['int64', [], [12]]);
    expect(out.mask[0]).toBe('uint8');
    expect(new Uint8Array(fs.readFileSync(theirs))).toEqual(new Uint8Array(fs.readFileSync(ours)));
  });

  it('we read what Python writes, including the dtypes we widen', () => {
    const file = path.join(tmpDir(), 'py.safetensors');
    const script = `
import sys, numpy as np
from safetensors.numpy import save_file
save_file({
  'h': np.array([1.0, -2.5, 65504.0, 6e-8], dtype=np.float16),
  'b': np.array([True, False, True]),
  'i8': np.array([-128, 127], dtype=np.int8),
  'u16': np.array([65535], dtype=np.uint16),
  's': np.array(3.25, dtype=np.float32),
  'e': np.zeros((0, 4), dtype=np.float32),
}, sys.argv[1], metadata={'k': 'v'})
`;
    execFileSync('python3', ['-c', script, file]);
    const { tensors: t, metadata } = decodeSafetensors(fs.readFileSync(file), file);
    expect(metadata).toEqual({ k: 'v' });
    expect([...t.h.data]).toEqual([...new Float32Array([1, -2.5, 65504, 2 ** -24])]);
    expect(t.b).toEqual({ dtype: 'U8', shape: [3], data: new Uint8Array([1, 0, 1]) });
    expect([...t.i8.data]).toEqual([-128, 127]);
    expect([...t.u16.data]).toEqual([65535]);
    expect(t.s).toEqual({ dtype: 'F32', shape: [], data: new Float32Array([3.25]) });
    expect(t.e.shape).toEqual([0, 4]);
  });
});

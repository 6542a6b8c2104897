// The uniform-struct schema: the WGSL text and the packed words agree field by field, so a kernel reads
// exactly what its launcher wrote (checked on the GPU with a kernel that copies every field out).
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { uniformStruct, type UniformScalar } from '../../src/shaders/uniform.js';
import { initDevice } from '../../src/tensor/device.js';
import { queue } from '../../src/tensor/queue.js';
import { empty } from '../../src/tensor/tensor.js';

beforeAll(async () => {
  await initDevice();
});

describe('uniform struct schema', () => {
  it('pads to whole vec4 granules and lists fields in order', () => {
    const s = uniformStruct([['n', 'u32'], ['pt', 'i32'], ['lr', 'f32'], ['k', 'u32'], ['m', 'u32']] as const);
    expect(s.words).toBe(8);
    expect(s.wgsl).toBe('struct P {\n  n: u32, pt: i32, lr: f32, k: u32,\n  m: u32, _pad0: u32, _pad1: u32, _pad2: u32,\n}');
    const w = s.pack({ n: 7, pt: -3, lr: 0.5, k: 1, m: 2 ** 32 - 1 });
    expect(w[0]).toBe(7);
    expect(new Int32Array(w.buffer)[1]).toBe(-3);
    expect(new Float32Array(w.buffer)[2]).toBe(0.5);
    expect(w[4]).toBe(2 ** 32 - 1);
  });

  it('refuses a missing field, a negative or fractional u32 and duplicate names', () => {
    const s = uniformStruct([['n', 'u32'], ['a', 'f32']] as const);
    expect(() => s.pack({ n: 1 } as { n: number; a: number })).toThrow(/field 'a'/);
    expect(() => s.pack({ n: -1, a: 0 })).toThrow(/u32 field 'n'/);
    expect(() => s.pack({ n: 1.5, a: 0 })).toThrow(/u32 field 'n'/);
    expect(() => uniformStruct([['n', 'u32'], ['n', 'f32']] as const)).toThrow(/twice/);
  });

  it('a kernel reads back every field the host packed, for random schemas', async () => {
    const types: UniformScalar[] = ['u32', 'i32', 'f32'];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...types), { minLength: 1, maxLength: 13 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), async (ts, seed) => {
        const fields = ts.map((t, i) => [`f${i}`, t] as const);
        const s = uniformStruct(fields);
        const values: Record<string, number> = {};
        ts.forEach((t, i) => {
          const r = (seed * (i + 1) * 2654435761) >>> 0;
          values[`f${i}`] = t === 'u32' ? r : t === 'i32' ? (r | 0) : Math.fround((r % 1000) / 7 - 50);
        });
        // One thread copies each field's bits into out[i].
        const body = ts.map((t, i) => `  out[${i}] = ${t === 'u32' ? `p.f${i}` : `bitcast<u32>(p.f${i})`};`).join('\n');
        const code = `${s.wgsl}\n@group(0) @binding(0) var<storage, read_write> out: array<u32>;\n@group(0) @binding(1) var<uniform> p: P;\n@compute @workgroup_size(1)\nfn main() {\n${body}\n}\n`;
        const out = empty([ts.length], 'u32');
        queue.dispatch({ name: 'uniform_echo', code, bindings: ['write', 'uniform'] }, [{ buffer: out.buf }], s.pack(values), [1, 1, 1]);
        const got = (await out.toArray()) as Uint32Array;
        out.dispose();
        const want = s.pack(values).subarray(0, ts.length);
        expect([...got]).toEqual([...want]);
      }),
      { numRuns: 8 },
    );
  });
});

// Fuzz: corrupt safetensors files (headers, offsets, dtypes, shapes, metadata, truncation, bit flips).
// Decoding either succeeds with tensors that match their headers, or fails with a one-line
// SafetensorsError naming the file; loading one into a model names the file and the key.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsError, decodeSafetensors, encodeSafetensors, readSafetensorsHeader, type HostTensor } from '../../src/io/safetensors.js';
import { createModel } from '../../src/nn/models/index.js';
import { loadModel, saveModel } from '../../src/nn/checkpoint.js';
import { expectOneLineError, fuzzRuns, fuzzSeed, snapshot, withinMs, fuzzTimeout } from './fuzz-util.js';

const valid = encodeSafetensors(
  {
    'a.weight': { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
    b: { dtype: 'I64', shape: [2], data: BigInt64Array.from([1n, -2n]) },
    c: { dtype: 'U8', shape: [3], data: Uint8Array.from([1, 2, 3]) },
  } satisfies Record<string, HostTensor>,
  { format: 'pt', note: 'x' },
);
const headerLen = Number(new DataView(valid.buffer).getBigUint64(0, true));
const header = JSON.parse(Buffer.from(valid.subarray(8, 8 + headerLen)).toString('utf8')) as Record<string, unknown>;

function withHeader(h: unknown, data: Uint8Array = valid.subarray(8 + headerLen)): Uint8Array {
  const json = Buffer.from(JSON.stringify(h), 'utf8');
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const anyJson = fc.oneof(
  fc.constantFrom(null, true, -1, 0, 1e300, 2 ** 53, -0.5, '', 'F32', 'BF16', 'F8', [], {}, [0], [-1, 2], [1e20], [0, 1e20]),
  fc.jsonValue({ maxDepth: 2 }),
);

/** A mutation of the valid file: raw bytes, or one field of the JSON header. */
const corrupt: fc.Arbitrary<Uint8Array> = fc.oneof(
  // truncation anywhere
  fc.nat(valid.length - 1).map((n) => valid.slice(0, n)),
  // byte overwrites, mostly in the header
  fc.array(fc.tuple(fc.nat(8 + headerLen + 8), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((flips) => {
    const b = valid.slice();
    for (const [i, v] of flips) if (i < b.length) b[i] = v;
    return b;
  }),
  // the length prefix
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((n) => {
    const b = valid.slice();
    new DataView(b.buffer).setBigUint64(0, n, true);
    return b;
  }),
  // one field of one tensor entry
  fc.tuple(fc.constantFrom('a.weight', 'b', 'c'), fc.constantFrom('dtype', 'shape', 'data_offsets', undefined), anyJson).map(([name, field, v]) => {
    const h = structuredClone(header);
    if (field === undefined) h[name] = v;
    else (h[name] as Record<string, unknown>)[field] = v;
    return withHeader(h);
  }),
  // metadata
  anyJson.map((v) => withHeader({ ...structuredClone(header), __metadata__: v })),
  // a whole random header, with random trailing data
  fc.tuple(fc.jsonValue({ maxDepth: 3 }), fc.uint8Array({ maxLength: 64 })).map(([h, d]) => withHeader(h, d)),
);

describe('fuzz: corrupt safetensors', () => {
  it('decode succeeds consistently or fails with a one-line SafetensorsError naming the file', () => {
    let failed = 0;
    let decoded = 0;
    fc.assert(
      fc.property(corrupt, (bytes) => {
        try {
          const { tensors } = decodeSafetensors(bytes, 'f.safetensors');
          for (const t of Object.values(tensors)) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
          decoded++;
        } catch (e) {
          expect(e).toBeInstanceOf(SafetensorsError);
          expectOneLineError(e);
          expect((e as Error).message.startsWith('f.safetensors: ')).toBe(true);
          failed++;
        }
      }),
      { numRuns: fuzzRuns(400), seed: fuzzSeed },
    );
    expect(failed).toBeGreaterThan(0);
    expect(decoded + failed).toBe(fuzzRuns(400));
  }, fuzzTimeout);

  it('loading a damaged weights file into a model names the file; nothing else is touched', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-st-'));
    const model = createModel('meso4', { size: 32, seed: 1 });
    const good = path.join(dir, 'good.safetensors');
    await saveModel(good, model);
    const goodBytes = fs.readFileSync(good);
    const gl = Number(goodBytes.readBigUInt64LE(0));
    const before = snapshot(dir);
    const file = path.join(dir, 'bad.safetensors');
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.nat(goodBytes.length - 1).map((n) => goodBytes.subarray(0, n)),
          fc.array(fc.tuple(fc.nat(8 + gl), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }).map((fl) => {
            const b = Buffer.from(goodBytes);
            for (const [i, v] of fl) b[i] = v;
            return b;
          }),
        ),
        async (bytes) => {
          fs.writeFileSync(file, bytes);
          try {
            await withinMs(10_000, 'loadModel', loadModel(file, model));
            await withinMs(10_000, 'readSafetensorsHeader', readSafetensorsHeader(file));
          } catch (e) {
            expectOneLineError(e);
            expect((e as Error).message).toContain(file);
          }
        },
      ),
      { numRuns: fuzzRuns(60), seed: fuzzSeed },
    );
    fs.rmSync(file);
    expect(snapshot(dir)).toEqual(before);
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }, fuzzTimeout);
});

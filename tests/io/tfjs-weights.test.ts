import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeTfjsWeights, readTfjsWeights, type TfjsWeightSpec } from '../../src/io/tfjs-weights.js';

type Stored = 'float32' | 'int32' | 'uint8' | 'uint16';

/** Encodes values the way TF.js's converter stores them (little-endian; quantized as q). */
function encode(kind: Stored, values: number[]): Uint8Array {
  const size = kind === 'uint8' ? 1 : kind === 'uint16' ? 2 : 4;
  const b = new DataView(new ArrayBuffer(values.length * size));
  values.forEach((v, i) => {
    if (kind === 'float32') b.setFloat32(4 * i, v, true);
    else if (kind === 'int32') b.setInt32(4 * i, v, true);
    else if (kind === 'uint16') b.setUint16(2 * i, v, true);
    else b.setUint8(i, v);
  });
  return new Uint8Array(b.buffer);
}

const weightArb = fc.record({
  kind: fc.constantFrom<Stored>('float32', 'int32', 'uint8', 'uint16'),
  shape: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 3 }),
  scale: fc.double({ min: 1e-4, max: 2, noNaN: true }),
  min: fc.double({ min: -5, max: 5, noNaN: true }),
  seed: fc.integer({ min: 0, max: 1000 }),
});

describe('TF.js weight manifests', () => {
  it('decodes float32, int32 and uint8/uint16-quantized weights across arbitrary shard splits', () => {
    fc.assert(
      fc.property(fc.array(weightArb, { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 3 }), (ws, nShards) => {
        const specs: TfjsWeightSpec[] = [];
        const chunks: Uint8Array[] = [];
        const want: number[][] = [];
        ws.forEach((w, k) => {
          const n = w.shape.reduce((a, b) => a * b, 1);
          const raw = Array.from({ length: n }, (_, i) => (w.seed * 31 + i * 17) % (w.kind === 'uint8' ? 256 : 65536));
          const name = `layer_${k}/w`;
          if (w.kind === 'float32' || w.kind === 'int32') {
            const vals = raw.map((r) => (w.kind === 'int32' ? r - 300 : Math.fround(r * 0.37 - 11)));
            specs.push({ name, shape: w.shape, dtype: w.kind });
            chunks.push(encode(w.kind, vals));
            want.push(vals);
          } else {
            specs.push({ name, shape: w.shape, dtype: 'float32', quantization: { dtype: w.kind, scale: w.scale, min: w.min } });
            chunks.push(encode(w.kind, raw));
            want.push(raw.map((q) => Math.fround(q * w.scale + w.min)));
          }
        });
        const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
        let at = 0;
        for (const c of chunks) {
          all.set(c, at);
          at += c.length;
        }
        // Shards split the group's bytes at arbitrary points, as the converter does (4 MB shards).
        const cuts = Array.from({ length: nShards - 1 }, (_, i) => Math.floor((all.length * (i + 1)) / nShards));
        const bounds = [0, ...cuts, all.length];
        const shards = new Map(bounds.slice(1).map((e, i) => [`g1-shard${i}of${nShards}`, all.slice(bounds[i], e)]));
        const got = decodeTfjsWeights('m.json', [{ paths: [...shards.keys()], weights: specs }], (rel) => shards.get(rel)!);
        specs.forEach((s, k) => {
          const t = got.get(s.name)!;
          expect(t.shape).toEqual(s.shape);
          expect(t.dtype).toBe(s.dtype === 'int32' ? 'I32' : 'F32');
          expect(Array.from(t.data)).toEqual(want[k]);
        });
      }),
      { numRuns: 60 },
    );
  });

  it('fails in one line naming the manifest and the weight', () => {
    const short = () => decodeTfjsWeights('m.json', [{ paths: ['a.bin'], weights: [{ name: 'conv/w', shape: [4], dtype: 'float32' }] }], () => new Uint8Array(8));
    expect(short).toThrow(/^m\.json: weight "conv\/w": needs bytes \[0, 16\) but the shards hold 8$/);
    const extra = () => decodeTfjsWeights('m.json', [{ paths: ['a.bin'], weights: [{ name: 'b', shape: [1], dtype: 'float32' }] }], () => new Uint8Array(8));
    expect(extra).toThrow(/hold 8 bytes, the weights 4/);
    const bad = () => decodeTfjsWeights('m.json', [{ paths: [], weights: [{ name: 'q', shape: [1], dtype: 'float32', quantization: { dtype: 'uint8' } }] }], () => new Uint8Array(0));
    expect(bad).toThrow(/weight "q": quantization .* needs a finite scale and min/);
  });

  it('reads the shipped SSD-MobileNet-v1 manifest: 5118 anchors and dequantised weights', () => {
    const dir = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
    const w = readTfjsWeights(path.join(dir, 'model', 'ssd_mobilenetv1_model-weights_manifest.json'));
    expect(w.get('Output/extra_dim')!.shape).toEqual([1, 5118, 4]);
    const dw = w.get('MobilenetV1/Conv2d_1_depthwise/depthwise_weights')!;
    expect(dw.shape).toEqual([3, 3, 32, 1]);
    expect(w.get('Preprocessor/ResizeImage/size')!.data[0]).toBe(512);
    const missing = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tl-tfjs-')), 'x.json');
    fs.writeFileSync(missing, JSON.stringify([{ paths: ['nope.bin'], weights: [] }]));
    expect(() => readTfjsWeights(missing)).toThrow(/x\.json: cannot read shard .*nope\.bin/);
  });
});

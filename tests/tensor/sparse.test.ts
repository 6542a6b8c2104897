// Sparse conv2d / linear kernels (src/tensor/ops/sparse.ts) against the float64 reference on the
// masked weight and against the dense masked path, on random geometries and densities 0%..100%, for
// both block widths; the compressed layout against the mask it came from.
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { binary, fromArray, queue } from '../../src/tensor/index.js';
import { conv2dBackwardInput, conv2dBackwardWeight, conv2dForward } from '../../src/tensor/ops/conv.js';
import {
  buildBlocks,
  SparseWeight,
  sparseConv2dBackwardInput,
  sparseConv2dBackwardWeight,
  sparseConv2dForward,
  sparseGather,
  SPARSE_BLOCKS,
  type SparseBlock,
} from '../../src/tensor/ops/sparse.js';
import { sparseLinearBackwardInput, sparseLinearBackwardWeight, sparseLinearForward } from '../../src/tensor/ops/sparse-linear.js';
import { SPARSE_NONE } from '../../src/shaders/sparse-conv.js';
import { buildCoTiles } from '../../src/tensor/ops/sparse-cotile.js';
import { setKernelOverride } from '../../src/tensor/plan.js';
import { parseGranularity, unitLayout } from '../../src/prune/granularity.js';
import { seededValues } from '../ref/arb.js';
import { convCaseFields, hasOutput, refGeom, type ConvCase } from '../ref/conv-case.js';
import { conv2dBackwardInputRef, conv2dBackwardWeightRef, conv2dRef, convOut, expectNear } from '../ref/conv-ref.js';
import { refMatmul } from '../ref/matmul-ref.js';

const matmulRef = (a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number) =>
  refMatmul({ a, aShape: [m, k], b, bShape: [k, n] }).data;

/** A 0/1 mask with round(density * n) ones at seeded positions (exact density, incl. 0 and 1). */
function randomMask(n: number, density: number, seed: number): Uint8Array {
  const m = new Uint8Array(n);
  const keep = Math.round(density * n);
  const order = Array.from(seededValues(n, seed, 0, 1), (v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  for (let i = 0; i < keep; i++) m[order[i][1]] = 1;
  return m;
}

const densityArb = fc.oneof(fc.constantFrom(0, 1, 0.01, 0.1), fc.double({ min: 0, max: 1, noNaN: true }));

interface Case extends ConvCase {
  density: number;
  bn: SparseBlock;
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({ ...convCaseFields, density: densityArb, bn: fc.constantFrom(...SPARSE_BLOCKS) })
  .filter(hasOutput);

const TOL = 2e-5;

/** A mask of whole 8-output-channel blocks at a tap (`--granularity block:8`), round(density * blocks) kept. */
function blockMask(shape: number[], density: number, seed: number): Uint8Array {
  const l = unitLayout(shape, parseGranularity('block:8'));
  const units = randomMask(l.units, density, seed);
  return Uint8Array.from(l.unitOf, (u) => units[u]);
}

async function checkConv(c: Case, structured = false): Promise<void> {
  const g = refGeom(c);
  const [oh, ow] = convOut(g);
  const xShape = [c.n, c.cin, c.h, c.w];
  const wShape = [c.cout, c.cin, c.kh, c.kw];
  const yShape = [c.n, c.cout, oh, ow];
  const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const xs = seededValues(prod(xShape), c.seed);
  const ws = seededValues(prod(wShape), c.seed + 1, -1, 1);
  const bs = seededValues(c.cout, c.seed + 2);
  const dys = seededValues(prod(yShape), c.seed + 3);
  const mask = structured ? blockMask(wShape, c.density, c.seed + 4) : randomMask(ws.length, c.density, c.seed + 4);
  const wm = ws.map((v, i) => (mask[i] ? v : 0));
  const o = { stride: [c.sh, c.sw] as [number, number], dilation: [c.dh, c.dw] as [number, number], padding: c.padding };
  const x = fromArray(xs, xShape);
  const w = fromArray(ws, wShape);
  const mk = fromArray(Float32Array.from(mask), wShape);
  const b = c.bias ? fromArray(bs, [c.cout]) : null;
  const dy = fromArray(dys, yShape);
  const sw = new SparseWeight(mask, wShape);
  const vo = sparseGather(w, sw.side(c.bn, true));
  const y = sparseConv2dForward(x, sw, vo, c.bn, b, o);
  const dx = sparseConv2dBackwardInput(dy, sw, w, c.bn, xShape, o);
  const dw = sparseConv2dBackwardWeight(dy, x, sw, c.bn, o);
  // The dense masked path the sparse one replaces.
  const wmT = binary('mul', w, mk);
  const yd = conv2dForward(x, wmT, b, o);
  const dxd = conv2dBackwardInput(dy, wmT, xShape, o);
  const dwFull = conv2dBackwardWeight(dy, x, wShape, o);
  const dwd = binary('mul', dwFull, mk);
  const what = JSON.stringify(c);
  const yv = await y.toArray();
  const dxv = await dx.toArray();
  const dwv = (await dw.toArray()) as Float32Array;
  expectNear(yv, conv2dRef(xs, wm, c.bias ? bs : null, g), TOL, `forward vs ref ${what}`);
  expectNear(dxv, conv2dBackwardInputRef(dys, wm, g), TOL, `input grad vs ref ${what}`);
  const dwRef = conv2dBackwardWeightRef(dys, xs, g).map((v, i) => (mask[i] ? v : 0));
  expectNear(dwv, dwRef, TOL, `weight grad vs ref ${what}`);
  expectNear(yv, await yd.toArray(), TOL, `forward vs dense masked ${what}`);
  expectNear(dxv, await dxd.toArray(), TOL, `input grad vs dense masked ${what}`);
  expectNear(dwv, await dwd.toArray(), TOL, `weight grad vs dense masked ${what}`);
  // Pruned positions hold exact +0 (not -0, not a tiny value).
  for (let i = 0; i < mask.length; i++) if (!mask[i] && !Object.is(dwv[i], 0)) throw new Error(`weight grad ${dwv[i]} at pruned ${i} ${what}`);
  for (const t of [x, w, mk, dy, vo, y, dx, dw, wmT, yd, dxd, dwFull, dwd, ...(b ? [b] : [])]) t.dispose();
  sw.dispose();
}

describe('sparse co-tile layout', () => {
  it('lists each kept weight exactly once, grouped by (output block, ky) per tile, padding marked', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 19 }),
        fc.integer({ min: 1, max: 19 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        densityArb,
        fc.boolean(),
        fc.integer({ min: 1, max: 1 << 30 }),
        (cout, cin, kh, kw, density, blocked, seed) => {
          const shape = [cout, cin, kh, kw];
          const n = cout * cin * kh * kw;
          const mask = blocked ? blockMask(shape, density, seed) : randomMask(n, density, seed);
          const l = buildCoTiles(mask, shape, 8, SPARSE_NONE);
          const seen = new Uint8Array(n);
          expect(l.tptr[l.tiles]).toBe(l.groups.length / 2 - 1);
          for (let t = 0; t < l.tiles; t++) {
            for (let gi = l.tptr[t]; gi < l.tptr[t + 1]; gi++) {
              const [gk, e0, e1] = [l.groups[2 * gi], l.groups[2 * gi + 1], l.groups[2 * gi + 3]];
              expect(e1).toBeGreaterThan(e0);
              const [g, ky] = [gk >> 8, gk & 255];
              for (let e = e0; e < e1; e++) {
                const [cl, kx] = [Math.floor(l.ents[e] / kw), l.ents[e] % kw];
                for (let j = 0; j < 8; j++) {
                  const co = g * 8 + j;
                  const at = ((co * cin + t * 8 + cl) * kh + ky) * kw + kx;
                  const v = l.idx[e * 8 + j];
                  if (co < cout && mask[at]) {
                    expect(v).toBe(at);
                    seen[at]++;
                  } else expect(v).toBe(SPARSE_NONE);
                }
              }
            }
          }
          for (let i = 0; i < n; i++) expect(seen[i]).toBe(mask[i]);
          // Block masks list exactly their kept blocks: no entry is all padding.
          if (blocked) for (let e = 0; e < l.ents.length; e++) expect(l.idx.slice(e * 8, e * 8 + 8).some((v) => v !== SPARSE_NONE)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('sparse layout', () => {
  it('lists every kept weight exactly once, per block, in (channel, ky, kx) order', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 19 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        densityArb,
        fc.constantFrom(...SPARSE_BLOCKS),
        fc.boolean(),
        fc.integer({ min: 1, max: 1 << 30 }),
        (cout, cin, kh, kw, density, bn, byOut, seed) => {
          const shape = [cout, cin, kh, kw];
          const mask = randomMask(cout * cin * kh * kw, density, seed);
          const { ptr, taps, idx } = buildBlocks(mask, shape, bn, byOut);
          const seen = new Uint8Array(mask.length);
          const nc = byOut ? cout : cin;
          expect(ptr.length).toBe(Math.ceil(nc / bn) + 1);
          expect(idx.length).toBe(taps.length * bn);
          for (let b = 0; b + 1 < ptr.length; b++) {
            for (let e = ptr[b]; e < ptr[b + 1]; e++) {
              if (e > ptr[b]) expect(taps[e]).toBeGreaterThan(taps[e - 1]);
              const o = taps[e] >>> 16;
              const ky = (taps[e] >>> 8) & 255;
              const kx = taps[e] & 255;
              let any = false;
              for (let j = 0; j < bn; j++) {
                const c = b * bn + j;
                const flat = byOut ? ((c * cin + o) * kh + ky) * kw + kx : ((o * cin + c) * kh + ky) * kw + kx;
                if (idx[e * bn + j] === SPARSE_NONE) {
                  if (c < nc) expect(mask[flat]).toBe(0);
                  continue;
                }
                expect(idx[e * bn + j]).toBe(flat);
                expect(mask[flat]).toBe(1);
                seen[flat]++;
                any = true;
              }
              expect(any).toBe(true);
            }
          }
          expect(Array.from(seen)).toEqual(Array.from(mask));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('sparse conv2d', () => {
  it('forward, input grad and masked weight grad match the float64 reference and the dense masked path', async () => {
    await fc.assert(fc.asyncProperty(caseArb, (c) => checkConv(c)), { numRuns: 40 });
  });
  it('handles a layer pruned entirely and one not pruned at all, with stride, dilation and Keras same', async () => {
    for (const bn of SPARSE_BLOCKS) {
      for (const density of [0, 1]) {
        await checkConv({ n: 2, cin: 3, cout: 9, h: 8, w: 7, kh: 3, kw: 4, sh: 2, sw: 1, dh: 1, dw: 2, padding: 'same', bias: true, density, bn, seed: 11 });
      }
    }
  });
  it('walks several blocks per workgroup when channels outnumber the workgroups a software adapter wants', async () => {
    // 70 channels a side: compressed rows give 70 blocks, more than a 1-row-group grid spreads over z.
    for (const bn of SPARSE_BLOCKS) {
      await checkConv({ n: 1, cin: 70, cout: 70, h: 3, w: 4, kh: 3, kw: 3, sh: 1, sw: 2, dh: 1, dw: 1, padding: 'same', bias: true, density: 0.3, bn, seed: 5 });
    }
  });
});

/**
 * Stride-1 cases the row-strip forms of the blocked layout serve (sparse-strip.ts): rows of whole
 * vec4s (W and OW multiples of 4), padding below the kernel on every side.
 */
const stripCaseArb = (widths: number[], padding = convCaseFields.padding): fc.Arbitrary<Case> => fc
  .record({
    ...convCaseFields,
    cin: fc.integer({ min: 1, max: 11 }),
    h: fc.integer({ min: 1, max: 9 }),
    w: fc.constantFrom(...widths),
    padding,
    sh: fc.constant(1),
    sw: fc.constant(1),
    dh: fc.constant(1),
    dw: fc.constant(1),
    density: densityArb,
    bn: fc.constant(8 as SparseBlock),
  })
  .filter((c) => {
    if (!hasOutput(c)) return false;
    const g = refGeom(c);
    const [pt, pl, pb, pr] = g.pad;
    return convOut(g)[1] % 4 === 0 && pt < c.kh && pb < c.kh && pl < c.kw && pr < c.kw;
  });

/**
 * Each row-strip form forced (forward / input grad at 8 and 16 pixels a thread, the quad weight gradient
 * at 2 and 4 taps a lane), with cases it suits (16 pixels: rows of 16 or more).
 */
const STRIP_FORMS: [string, fc.Arbitrary<Case>, number][] = [
  ['sparse.blocked:strip:px8,sparse.wgrad:strip:8x1,sparse.cotile:off', stripCaseArb([4, 8, 12, 16]), 10],
  ['sparse.blocked:strip:px8,sparse.wgrad:strip:8x2', stripCaseArb([4, 8, 12, 16]), 20],
  ['sparse.blocked:strip:px8,sparse.wgrad:strip:8x4', stripCaseArb([4, 8, 12, 16]), 20],
  ['sparse.blocked:strip:px8,sparse.wgrad:strip:8x8', stripCaseArb([4, 8, 12, 16]), 10],
  // Fewer runs: each (kw, padding) compiles a 16-pixel kernel, slow on lavapipe.
  ['sparse.blocked:strip:px16,sparse.wgrad:strip:8x4,sparse.cotile:off', stripCaseArb([16, 20], fc.constant('same' as const)), 8],
  // The co-tile input gradient at 8 and 16 pixels a thread.
  ['sparse.blocked:strip:px8,sparse.cotile:on:px8', stripCaseArb([4, 8, 12, 16]), 10],
  // Few runs: each (kw, padding) compiles a 16-pixel co-tile kernel, slow on lavapipe.
  ['sparse.blocked:strip:px16,sparse.cotile:on:px16', stripCaseArb([16, 20], fc.constant('same' as const)), 4],
];

describe('sparse conv2d, blocked layout by row strips', () => {
  afterAll(() => setKernelOverride(null));
  for (const [form, arb, runs] of STRIP_FORMS) {
    it(`${form}: matches the float64 reference and the dense masked path under random and block:8 masks`, async () => {
      setKernelOverride(form);
      try {
        await fc.assert(fc.asyncProperty(arb, fc.boolean(), checkConv), { numRuns: runs });
        // Empty, full, and more blocks than a software grid's workgroups (walked several per workgroup).
        for (const density of [0, 1]) await checkConv({ n: 2, cin: 3, cout: 9, h: 5, w: 16, kh: 3, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, padding: 'same', bias: true, density, bn: 8, seed: 3 });
        await checkConv({ n: 1, cin: 70, cout: 90, h: 3, w: 16, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, padding: 'same', bias: true, density: 0.2, bn: 8, seed: 5 }, true);
      } finally {
        setKernelOverride(null);
      }
    });
  }
});

describe('sparse linear', () => {
  it('forward and both grads match the float64 reference on the masked weight', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 20 }),
        densityArb,
        fc.constantFrom(...SPARSE_BLOCKS),
        fc.boolean(),
        fc.integer({ min: 1, max: 1 << 30 }),
        async (n, fin, fout, density, bn, bias, seed) => {
          const xs = seededValues(n * fin, seed);
          const ws = seededValues(fout * fin, seed + 1, -1, 1);
          const bs = seededValues(fout, seed + 2);
          const dys = seededValues(n * fout, seed + 3);
          const mask = randomMask(ws.length, density, seed + 4);
          const wm = ws.map((v, i) => (mask[i] ? v : 0));
          const x = fromArray(xs, [n, fin]);
          const w = fromArray(ws, [fout, fin]);
          const b = bias ? fromArray(bs, [fout]) : null;
          const dy = fromArray(dys, [n, fout]);
          const sw = new SparseWeight(mask, [fout, fin]);
          const vo = sparseGather(w, sw.side(bn, true));
          const vi = sparseGather(w, sw.side(bn, false));
          const y = sparseLinearForward(x, sw, vo, bn, b);
          const dx = sparseLinearBackwardInput(dy, sw, vi, bn, [n, fin]);
          const dw = sparseLinearBackwardWeight(dy, x, sw, bn);
          expect(y.shape).toEqual([n, fout]);
          expect(dw.shape).toEqual([fout, fin]);
          // y = x wm^T + b; dx = dy wm; dw = (dy^T x) * mask.
          const wmT = new Float64Array(fin * fout);
          for (let o = 0; o < fout; o++) for (let i = 0; i < fin; i++) wmT[i * fout + o] = wm[o * fin + i];
          const yRef = matmulRef(xs, wmT, n, fin, fout).map((v, i) => v + (bias ? bs[i % fout] : 0));
          const dyT = new Float64Array(fout * n);
          for (let r = 0; r < n; r++) for (let o = 0; o < fout; o++) dyT[o * n + r] = dys[r * fout + o];
          const what = JSON.stringify({ n, fin, fout, density, bn, bias, seed });
          expectNear(await y.toArray(), yRef, TOL, `linear forward ${what}`);
          expectNear(await dx.toArray(), matmulRef(dys, wm, n, fout, fin), TOL, `linear input grad ${what}`);
          const dwv = (await dw.toArray()) as Float32Array;
          expectNear(dwv, matmulRef(dyT, xs, fout, n, fin).map((v, i) => (mask[i] ? v : 0)), TOL, `linear weight grad ${what}`);
          for (let i = 0; i < mask.length; i++) if (!mask[i] && !Object.is(dwv[i], 0)) throw new Error(`pruned ${i} holds ${dwv[i]} ${what}`);
          for (const t of [x, w, dy, vo, vi, y, dx, dw, ...(b ? [b] : [])]) t.dispose();
          sw.dispose();
        },
      ),
      { numRuns: 40 },
    );
  });
});

afterAll(async () => {
  await queue.sync();
});

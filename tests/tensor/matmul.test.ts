// Matmul vs a float64 reference: both kernel variants (and both tiles of the shared one) on random
// shapes with sizes 1, primes and non-multiples of the tiles, transposes, batch broadcasting and the
// fused epilogue (alpha, bias, beta * C, in place).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { empty, fromArray, type Tensor } from '../../src/tensor/tensor.js';
import { matmul, matmulDims, planMatmul, type MatmulOptions } from '../../src/tensor/ops/matmul.js';
import { queue } from '../../src/tensor/queue.js';
import { refMatmul } from '../ref/matmul-ref.js';

const F32_EPS = 2 ** -23;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function randomData(n: number, r: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() * 2 - 1;
  return out;
}

type Config = { variant: 'register' | 'shared'; tile?: string; epilogue?: 'loop' | 'unrolled' };
const CONFIGS: Config[] = [{ variant: 'register' }, { variant: 'shared', tile: '64x64' }, { variant: 'shared', tile: '128x128' }];

interface Case {
  M: number;
  N: number;
  K: number;
  /** 0: both 2-D; otherwise batch sizes of a and b (1 = batch-1 3-D; -1 = 2-D operand). */
  batchA: number;
  batchB: number;
  transA: boolean;
  transB: boolean;
  bias: boolean;
  c: 'none' | 'input' | 'inplace';
  alpha: number;
  beta: number;
  seed: number;
}

async function runCase(cs: Case, cfg: Config): Promise<void> {
  const r = rng(cs.seed);
  const { M, N, K, transA, transB } = cs;
  const aMat = transA ? [K, M] : [M, K];
  const bMat = transB ? [N, K] : [K, N];
  const aShape = cs.batchA < 0 ? aMat : [cs.batchA, ...aMat];
  const bShape = cs.batchB < 0 ? bMat : [cs.batchB, ...bMat];
  const dims = matmulDims(aShape, bShape, transA, transB);
  const size = (s: number[]) => s.reduce((p, d) => p * d, 1);
  const a = randomData(size(aShape), r);
  const b = randomData(size(bShape), r);
  const bias = cs.bias ? randomData(N, r) : undefined;
  const c = cs.c !== 'none' ? randomData(size(dims.outShape), r) : undefined;
  const A = fromArray(a, aShape);
  const B = fromArray(b, bShape);
  const tensors: Tensor[] = [A, B];
  const opts: MatmulOptions = { transA, transB, alpha: cs.alpha, ...cfg };
  if (bias) tensors.push((opts.bias = fromArray(bias)));
  if (c) {
    tensors.push((opts.c = fromArray(c, dims.outShape)));
    opts.beta = cs.beta;
    if (cs.c === 'inplace') opts.out = opts.c;
  }
  const Y = matmul(A, B, opts);
  if (Y !== opts.out) tensors.push(Y);
  const got = await Y.toArray();
  const ref = refMatmul({ a, aShape, b, bShape, transA, transB, alpha: cs.alpha, beta: cs.beta, bias, c });
  expect(Y.shape).toEqual(ref.shape);
  for (let i = 0; i < ref.data.length; i++) {
    // Float32 accumulation over K products plus rounding of the epilogue terms.
    const tol = (2 * K + 8) * F32_EPS * ref.mag[i] + 1e-30;
    if (!(Math.abs(got[i] - ref.data[i]) <= tol)) {
      throw new Error(
        `${cfg.variant}/${cfg.tile ?? '-'} ${JSON.stringify(cs)} out ${i}: got ${got[i]}, want ${ref.data[i]} (tol ${tol})`,
      );
    }
  }
  for (const t of tensors) t.dispose();
}

// Kernel flavours (transA, transB, and which of A / B / C may use vec4 access) each cost a pipeline
// compile of 0.5-2.5 s on lavapipe, so the random cases are drawn inside a fixed set of flavours
// that together take every code path of the generator: each operand's four load paths (contiguous
// along k or not, vec4 or scalar) and both epilogues (vec4 or scalar stores).
type Align = 'vec' | 'odd' | 'any';
interface Flavour {
  transA: boolean;
  transB: boolean;
  M: Align;
  N: Align;
  K: Align;
}
const FLAVOURS: Flavour[] = [
  { transA: false, transB: false, M: 'any', N: 'vec', K: 'vec' }, // A vec along k, B vec along n, C vec
  { transA: false, transB: false, M: 'any', N: 'odd', K: 'odd' }, // all scalar
  { transA: true, transB: true, M: 'vec', N: 'odd', K: 'vec' }, // A vec along m, B vec along k, C scalar
  { transA: true, transB: true, M: 'odd', N: 'vec', K: 'odd' }, // scalar loads, C vec
];
/** Extra mixed flavours, for the register variant only (cheap to compile). */
const MIXED: Flavour[] = [
  { transA: false, transB: true, M: 'odd', N: 'vec', K: 'vec' },
  { transA: true, transB: false, M: 'odd', N: 'odd', K: 'any' },
];

const VEC_SIZES = [4, 8, 12, 16, 64, 128, 132];
const ODD_SIZES = [1, 2, 3, 5, 7, 13, 17, 31, 33, 65, 67, 127, 129, 131];
const sizeArb = (a: Align) => fc.constantFrom(...(a === 'vec' ? VEC_SIZES : a === 'odd' ? ODD_SIZES : [...VEC_SIZES, ...ODD_SIZES]));

function caseArb(flavours: Flavour[]): fc.Arbitrary<Case> {
  return fc
    .constantFrom(...flavours)
    .chain((f) =>
      fc.record({
        M: sizeArb(f.M),
        N: sizeArb(f.N),
        K: sizeArb(f.K),
        batching: fc.constantFrom<[number, number]>([-1, -1], [3, 3], [1, 2], [2, 1], [-1, 3], [3, -1], [1, 1], [1, -1]),
        transA: fc.constant(f.transA),
        transB: fc.constant(f.transB),
        bias: fc.boolean(),
        c: fc.constantFrom<Case['c']>('none', 'none', 'input', 'inplace'),
        alpha: fc.constantFrom(1, 1, -0.5, 2),
        beta: fc.constantFrom(1, 0.25, -1),
        seed: fc.integer(),
      }),
    )
    .map(({ batching, ...o }) => ({ ...o, batchA: batching[0], batchB: batching[1] }))
    .filter((c) => c.M * c.N * c.K * Math.max(c.batchA, c.batchB, 1) <= 300_000);
}

describe('matmul vs float64 reference', () => {
  for (const cfg of CONFIGS) {
    it(`${cfg.variant}${cfg.tile ? `/${cfg.tile}` : ''}: random sizes, transposes, batches, epilogues`, async () => {
      const flavours = cfg.variant === 'register' ? [...FLAVOURS, ...MIXED] : FLAVOURS;
      await fc.assert(
        fc.asyncProperty(caseArb(flavours), (cs) => runCase(cs, cfg)),
        { numRuns: cfg.variant === 'register' ? 30 : 25 },
      );
    });
  }

  // GPUs get a straight-line epilogue, lavapipe a loop (compile time). Both come from one generator
  // function; run the straight-line form on the register variant (cheapest to compile) and check
  // that the shared variant's straight-line kernels (what a GPU runs) pass WGSL validation.
  it('tiles meant for large GPUs match the float64 reference', async () => {
    // Never picked by the static rule; the tuner may pick them on a GPU, so they must be right.
    for (const tile of ['128x64', '256x64', '128x128k16'])
      await fc.assert(fc.asyncProperty(caseArb([FLAVOURS[tile === '128x64' ? 2 : 0]]), (cs) => runCase(cs, { variant: 'shared', tile })), { numRuns: 2 });
  });

  it('register variant with the straight-line epilogue', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb([FLAVOURS[1]]), (cs) => runCase(cs, { variant: 'register', epilogue: 'unrolled' })),
      { numRuns: 8 },
    );
  });

  it('shared variant with the straight-line epilogue validates (every flavour, both tiles)', async () => {
    for (const tile of ['64x64', '128x128'] as const)
      for (const f of FLAVOURS) {
        const dim = (a: Align) => (a === 'odd' ? 5 : 8);
        const [M, N, K] = [dim(f.M), dim(f.N), dim(f.K)];
        const A = fromArray(new Float32Array(M * K), f.transA ? [K, M] : [M, K]);
        const B = fromArray(new Float32Array(K * N), f.transB ? [N, K] : [K, N]);
        const plan = planMatmul(A, B, { variant: 'shared', tile, epilogue: 'unrolled', transA: f.transA, transB: f.transB });
        expect(plan.kernel.name).toContain('_u');
        await queue.compile(plan.kernel);
        for (const t of [A, B, plan.out]) t.dispose();
      }
  });

  it('sizes at the tile edges, every flavour and config', async () => {
    const pick = (a: Align, v: number, o: number) => (a === 'odd' ? o : v);
    for (const cfg of CONFIGS)
      for (const f of FLAVOURS)
        for (const [v, o] of [
          [128, 129],
          [64, 63],
          [4, 1],
        ]) {
          const cs: Case = {
            M: pick(f.M, v, o),
            N: pick(f.N, v, o),
            K: pick(f.K, 8, 9),
            batchA: -1,
            batchB: -1,
            transA: f.transA,
            transB: f.transB,
            bias: true,
            c: 'input',
            alpha: 1,
            beta: 1,
            seed: v + o,
          };
          await runCase(cs, cfg);
        }
  });

  it('K = 0 gives bias + beta * C; empty M or N give empty results', async () => {
    for (const cfg of CONFIGS) {
      await runCase(
        { M: 5, N: 8, K: 0, batchA: -1, batchB: -1, transA: false, transB: false, bias: true, c: 'input', alpha: 1, beta: 0.5, seed: 1 },
        cfg,
      );
      const A = fromArray(new Float32Array(0), [0, 3]);
      const B = fromArray(new Float32Array(12), [3, 4]);
      const Y = matmul(A, B, cfg);
      expect(Y.shape).toEqual([0, 4]);
      for (const t of [A, B, Y]) t.dispose();
    }
  });
});

describe('matmul behaviour', () => {
  it('is deterministic (identical bits twice) and the default variant runs', async () => {
    const r = rng(5);
    const A = fromArray(randomData(97 * 61, r), [97, 61]);
    const B = fromArray(randomData(61 * 83, r), [61, 83]);
    for (const cfg of [{}, ...CONFIGS]) {
      const x = new Uint32Array((await matmul(A, B, cfg).toArray()).buffer);
      const y = new Uint32Array((await matmul(A, B, cfg).toArray()).buffer);
      expect(y).toEqual(x);
    }
    A.dispose();
    B.dispose();
  });

  it('accumulates in place into out === c (gradient accumulation)', async () => {
    const A = fromArray([1, 2, 3, 4], [2, 2]);
    const B = fromArray([1, 0, 0, 1], [2, 2]);
    const G = fromArray([10, 20, 30, 40], [2, 2]);
    matmul(A, B, { c: G, out: G });
    matmul(A, B, { c: G, out: G, alpha: 2, beta: 0.5 });
    // G = 0.5 * (G0 + AB) + 2 AB
    expect(Array.from(await G.toArray())).toEqual([0.5 * 11 + 2, 0.5 * 22 + 4, 0.5 * 33 + 6, 0.5 * 44 + 8]);
    const O = empty([2, 2]);
    matmul(A, B, { out: O, bias: fromArray([100, 200]) });
    expect(Array.from(await O.toArray())).toEqual([101, 202, 103, 204]);
    for (const t of [A, B, G, O]) t.dispose();
  });

  it('rejects mismatched shapes, dtypes and aliasing', () => {
    const A = fromArray(new Float32Array(6), [2, 3]);
    const B = fromArray(new Float32Array(8), [4, 2]);
    expect(() => matmul(A, B)).toThrow(/inner dims differ \(3 vs 4\)/);
    expect(matmulDims([2, 3], [5, 3, 4]).outShape).toEqual([5, 2, 4]);
    expect(matmulDims([1, 3, 4], [5, 3, 2], true, false).outShape).toEqual([5, 4, 2]);
    expect(matmulDims([7, 3], [2, 3], false, true).outShape).toEqual([7, 2]);
    expect(() => matmul(fromArray(new Float32Array(12), [2, 2, 3]), fromArray(new Float32Array(36), [3, 3, 4]))).toThrow(/batch sizes 2 and 3/);
    expect(() => matmul(A, fromArray(new Float32Array(3), [3]))).toThrow(/2-D or 3-D/);
    expect(() => matmul(A, fromArray(new Int32Array(6), [3, 2]))).toThrow(/f32/);
    const C = fromArray(new Float32Array(6), [2, 3]);
    expect(() => matmul(A, fromArray(new Float32Array(6), [3, 2]), { bias: fromArray(new Float32Array(3)) })).toThrow(/bias/);
    expect(() => matmul(A, fromArray(new Float32Array(9), [3, 3]), { out: A })).toThrow(/share storage/);
    expect(() => matmul(A, C, { transB: true, c: C })).toThrow(/c has shape/);
    A.dispose();
    B.dispose();
    C.dispose();
  });

  it('splits batches over the per-dimension workgroup limit', () => {
    const A = fromArray(new Float32Array(70000 * 2), [70000, 1, 2]);
    const B = fromArray(new Float32Array(4), [2, 2]);
    const plan = planMatmul(A, B, { variant: 'register' });
    expect(plan.dispatches.length).toBe(2);
    expect(plan.dispatches[1].grid[2]).toBe(70000 - 65535);
    plan.out.dispose();
    A.dispose();
    B.dispose();
  });
});

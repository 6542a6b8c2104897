// Fused ops against float64 references and finite differences, and against the unfused chain they
// replace (the planner's other candidate): batch norm with a ReLU before it (Meso) or after it (CNN-5,
// ResNet), training and eval mode, through autograd; BCE-with-logits fused with its mean.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { backward, noGrad } from '../../src/autograd/tape.js';
import * as F from '../../src/autograd/functional.js';
import { batchNormMaxPool, batchNormRelu, type ReluOrder } from '../../src/autograd/fused-nn.js';
import { foldPoolBackward } from '../../src/tensor/ops/fused.js';
import { fromArray, keep, tidy, queue, type Tensor } from '../../src/tensor/index.js';
import { clearPins, deviceTraits, pinKernels, plan, plannerRecord, resetPlannerRecord, setKernelOverride } from '../../src/tensor/plan.js';
import { seededValues } from '../ref/arb.js';
import { bnEvalRef, bnTrainRef, expectNear, finiteDiff, sameBits, sampleCoords } from '../ref/conv-ref.js';

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const relu64 = (v: ArrayLike<number>) => Float64Array.from(v, (x) => Math.max(x, 0));

interface Case {
  shape: number[];
  affine: boolean;
  seed: number;
}

/** [N, C, H, W] with at least 3 values per channel (two are cancellation-prone: tests/tensor/norm.test.ts). */
const caseArb = (quads: boolean): fc.Arbitrary<Case> =>
  fc
    .record({
      n: fc.constantFrom(1, 2, 3, 5),
      c: fc.integer({ min: 1, max: 6 }),
      h: fc.integer({ min: 1, max: 9 }),
      w: fc.integer({ min: 1, max: 9 }),
      affine: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
    })
    .map(({ n, c, h, w, affine, seed }) => ({ shape: [n, c, h, quads ? 4 * Math.ceil(w / 4) : w], affine, seed }))
    .filter((k) => k.shape[0] * k.shape[2] * k.shape[3] >= 3);

interface Run {
  y: Float32Array;
  dx: Float32Array;
  dgamma: Float32Array | null;
  dbeta: Float32Array | null;
  rm: Float32Array;
  rv: Float32Array;
}

function inputs(k: Case) {
  const c = k.shape[1];
  return {
    // Values away from 0 by at least 0.01, so a finite-difference step never crosses a ReLU kink.
    xs: seededValues(prod(k.shape), k.seed, -3, 5).map((v) => (Math.abs(v) < 0.01 ? 0.5 : v)),
    gamma: k.affine ? seededValues(c, k.seed + 1, 0.5, 1.5) : null,
    beta: k.affine ? seededValues(c, k.seed + 2, -0.5, 0.5) : null,
    rm: seededValues(c, k.seed + 3),
    rv: seededValues(c, k.seed + 4, 0.5, 2),
    dys: seededValues(prod(k.shape), k.seed + 5),
  };
}

type BnOp = (x: Tensor, g: Tensor | null, b: Tensor | null, rm: Tensor, rv: Tensor) => Tensor;

/** y, and the gradients of sum(y * dy) through autograd, of an op on the case's inputs; dy is drawn for y's size. */
async function runWith(k: Case, op: BnOp, dyFor: (size: number) => Float32Array): Promise<Run & { dy: Float32Array }> {
  const p = inputs(k);
  const c = k.shape[1];
  const leaf = (v: Float32Array, s: number[]) => {
    const t = keep(fromArray(v, s));
    t.requiresGrad = true;
    return t;
  };
  const x = leaf(p.xs, k.shape);
  const g = p.gamma ? leaf(p.gamma, [c]) : null;
  const b = p.beta ? leaf(p.beta, [c]) : null;
  const rm = keep(fromArray(p.rm, [c]));
  const rv = keep(fromArray(p.rv, [c]));
  let y!: Tensor;
  let dy!: Float32Array;
  tidy(() => {
    const out = op(x, g, b, rm, rv);
    y = keep(out);
    dy = dyFor(out.size);
    backward(F.sum(F.mul(out, fromArray(dy, out.shape))));
  });
  const r = {
    y: (await y.toArray()) as Float32Array,
    dx: (await x.grad!.toArray()) as Float32Array,
    dgamma: g ? ((await g.grad!.toArray()) as Float32Array) : null,
    dbeta: b ? ((await b.grad!.toArray()) as Float32Array) : null,
    rm: (await rm.toArray()) as Float32Array,
    rv: (await rv.toArray()) as Float32Array,
    dy,
  };
  for (const t of [x, g, b]) t?.grad?.dispose();
  for (const t of [x, g, b, rm, rv, y]) t?.dispose();
  return r;
}

function runOp(k: Case, order: ReluOrder, training: boolean): Promise<Run> {
  return runWith(k, (x, g, b, rm, rv) => batchNormRelu(x, order, g, b, rm, rv, training, 0.1, 1e-5), () => inputs(k).dys);
}

/** The float64 forward of the op as a function of x, gamma, beta. */
function ref(k: Case, order: ReluOrder, training: boolean, xv: ArrayLike<number>, gv: ArrayLike<number> | null, bv: ArrayLike<number> | null) {
  const [n, c, h, w] = k.shape;
  const p = inputs(k);
  const xin = order === 'relu-bn' ? relu64(xv) : xv;
  const t = training ? bnTrainRef(xin, n, c, h * w, gv, bv, p.rm, p.rv, 0.1, 1e-5) : null;
  const y = t ? t.y : bnEvalRef(xin, n, c, h * w, gv, bv, p.rm, p.rv, 1e-5);
  return { y: order === 'bn-relu' ? relu64(y) : y, running: t };
}

// Stage-1 and elementwise variants as in tests/tensor/norm.test.ts: the workgroup tree with scalars
// (GPUs), a thread per chunk with scalars, and the software default (thread4 and vec4 where they suit).
const VARIANTS = [
  { norm: 'norm:group,bn.apply:scalar', quads: false },
  { norm: 'norm:thread,bn.apply:scalar', quads: false },
  { norm: '', quads: true },
] as const;

afterAll(() => setKernelOverride(null));

for (const { norm, quads } of VARIANTS) {
  for (const training of [true, false]) {
    for (const order of ['relu-bn', 'bn-relu'] as const) {
      describe(`batchNormRelu ${order}, ${training ? 'training' : 'eval'}, ${norm || 'software default'}`, () => {
        afterEach(() => setKernelOverride(null));

        it('fused: matches float64 forward (and running stats) and finite differences of x, gamma, beta', async () => {
          setKernelOverride([norm, 'fused:fused'].filter(Boolean).join(','));
          await fc.assert(
            fc.asyncProperty(caseArb(quads), async (k) => {
              const c = k.shape[1];
              const p = inputs(k);
              const r = await runOp(k, order, training);
              const want = ref(k, order, training, p.xs, p.gamma, p.beta);
              const what = `${JSON.stringify(k)}`;
              expectNear(r.y, want.y, 3e-5, `y ${what}`);
              if (want.running) {
                expectNear(r.rm, want.running.runningMean, 4e-6, `running mean ${what}`);
                expectNear(r.rv, want.running.runningVar, 4e-6, `running var ${what}`);
              } else {
                expect(Array.from(r.rm)).toEqual(Array.from(p.rm));
              }
              const coords = sampleCoords(p.xs.length, 10, k.seed);
              const fx = finiteDiff((xv) => ref(k, order, training, xv, p.gamma, p.beta).y, p.xs, p.dys, coords, 1e-5);
              expectNear(coords.map((i) => r.dx[i]), fx, 3e-4, `dx vs finite differences ${what}`);
              if (k.affine) {
                const all = [...Array(c).keys()];
                const fg = finiteDiff((gv) => ref(k, order, training, p.xs, gv, p.beta).y, p.gamma!, p.dys, all);
                const fb = finiteDiff((bv) => ref(k, order, training, p.xs, p.gamma, bv).y, p.beta!, p.dys, all);
                expectNear(r.dgamma!, fg, 2e-4, `dgamma ${what}`);
                expectNear(r.dbeta!, fb, 2e-4, `dbeta ${what}`);
              }
            }),
            { numRuns: 6 },
          );
        });

        it('fused and unfused agree (relu-bn bit for bit; bn-relu within float32 rounding)', async () => {
          await fc.assert(
            fc.asyncProperty(caseArb(quads), async (k) => {
              setKernelOverride([norm, 'fused:fused'].filter(Boolean).join(','));
              const a = await runOp(k, order, training);
              setKernelOverride([norm, 'fused:unfused'].filter(Boolean).join(','));
              const b = await runOp(k, order, training);
              const what = JSON.stringify(k);
              const fields = ['y', 'dx', 'dgamma', 'dbeta', 'rm', 'rv'] as const;
              for (const f of fields) {
                const [u, v] = [a[f], b[f]];
                if (!u || !v) continue;
                if (order === 'relu-bn') expect(sameBits(u, v), `${f} ${what}`).toBe(true);
                else expectNear(u, v, 1e-6, `${f} fused vs unfused ${what}`);
              }
            }),
            { numRuns: 5 },
          );
        });
      });
    }
  }
}

/** Max pool in float64 over NCHW (padding as -inf), windows kernel k, stride s, padding pad. */
function maxPool64(y: ArrayLike<number>, [n, c, h, w]: number[], k: number, st: number, pad: number): Float64Array {
  const oh = Math.floor((h + 2 * pad - k) / st) + 1;
  const ow = Math.floor((w + 2 * pad - k) / st) + 1;
  const out = new Float64Array(n * c * oh * ow);
  for (let pl = 0; pl < n * c; pl++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++) {
        let m = -Infinity;
        for (let ky = 0; ky < k; ky++)
          for (let kx = 0; kx < k; kx++) {
            const iy = oy * st - pad + ky;
            const ix = ox * st - pad + kx;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) m = Math.max(m, y[pl * h * w + iy * w + ix]);
          }
        out[(pl * oh + oy) * ow + ox] = m;
      }
  return out;
}

describe('batchNormMaxPool: batch norm (+ ReLU) and max pool in one pass', () => {
  afterEach(() => setKernelOverride(null));
  const poolArb = fc.record({ k: fc.constantFrom(2, 3), s: fc.constantFrom(1, 2), pad: fc.constantFrom(0, 1) }).filter((p) => p.pad < p.k);
  const run = (k: Case, order: ReluOrder | null, training: boolean, pl: { k: number; s: number; pad: number }) =>
    runWith(
      k,
      (x, g, b, rm, rv) => batchNormMaxPool(x, order, g, b, rm, rv, training, 0.1, 1e-5, { kernel: pl.k, stride: pl.s, padding: pl.pad }),
      (size) => seededValues(size, k.seed + 7),
    );
  // Row-quad geometry: windows k x k, stride k, no padding, W % 4 == 0 and H % k == 0.
  const quadArb = fc
    .tuple(caseArb(true), fc.constantFrom(2, 4))
    .map(([k, q]) => ({ k: { ...k, shape: [k.shape[0], k.shape[1], q * Math.ceil(k.shape[2] / q), k.shape[3]] }, pl: { k: q, s: q, pad: 0 } }));
  const windowArb = fc.tuple(caseArb(false), poolArb).map(([k, pl]) => ({ k, pl }));
  for (const walk of ['window', 'quad'] as const)
  for (const training of [true, false]) {
    for (const order of [null, 'relu-bn', 'bn-relu'] as const) {
      it(`${walk}, ${order ?? 'no ReLU'}, ${training ? 'training' : 'eval'}: float64 forward, finite differences, and the unfused chain`, async () => {
        await fc.assert(
          fc.asyncProperty(walk === 'quad' ? quadArb : windowArb, async ({ k, pl }) => {
            if (k.shape[2] + 2 * pl.pad < pl.k || k.shape[3] + 2 * pl.pad < pl.k) return;
            setKernelOverride(`fused:fused,fused.bn-pool:fused:${walk}`);
            const a = await run(k, order, training, pl);
            setKernelOverride('fused:unfused');
            const u = await run(k, order, training, pl);
            const what = `${JSON.stringify(k)} ${JSON.stringify(pl)}`;
            // Same BN expressions and tie rule: the forward is the chain's bit for bit.
            expect(sameBits(a.y, u.y), `y ${what}`).toBe(true);
            expect(sameBits(a.rm, u.rm), `running mean ${what}`).toBe(true);
            for (const f of ['dx', 'dgamma', 'dbeta'] as const) if (a[f]) expectNear(a[f]!, u[f]!, 1e-6, `${f} fused vs unfused ${what}`);
            const p = inputs(k);
            const o: ReluOrder = order ?? 'relu-bn';
            const fwd = (xv: ArrayLike<number>, gv: ArrayLike<number> | null, bv: ArrayLike<number> | null) => {
              const bn = order ? ref(k, o, training, xv, gv, bv).y : (training ? bnTrainRef(xv, k.shape[0], k.shape[1], k.shape[2] * k.shape[3], gv, bv, p.rm, p.rv, 0.1, 1e-5).y : bnEvalRef(xv, k.shape[0], k.shape[1], k.shape[2] * k.shape[3], gv, bv, p.rm, p.rv, 1e-5));
              return maxPool64(bn, k.shape, pl.k, pl.s, pl.pad);
            };
            expectNear(a.y, fwd(p.xs, p.gamma, p.beta), 3e-5, `y vs float64 ${what}`);
            const coords = sampleCoords(p.xs.length, 8, k.seed);
            const fx = finiteDiff((xv) => fwd(xv, p.gamma, p.beta), p.xs, a.dy, coords, 1e-5);
            expectNear(coords.map((i) => a.dx[i]), fx, 3e-4, `dx vs finite differences ${what}`);
            if (k.affine) {
              const all = [...Array(k.shape[1]).keys()];
              expectNear(a.dgamma!, finiteDiff((gv) => fwd(p.xs, gv, p.beta), p.gamma!, a.dy, all), 2e-4, `dgamma ${what}`);
              expectNear(a.dbeta!, finiteDiff((bv) => fwd(p.xs, p.gamma, bv), p.beta!, a.dy, all), 2e-4, `dbeta ${what}`);
            }
          }),
          { numRuns: 5 },
        );
      });
    }
  }

  // The pool's backward folded into the BN backward (fused.bn-pool-bwd): windows that do not overlap
  // (stride >= kernel, padded or not), every stage-1 / elementwise variant.
  // With quads (the vec4 kernels), also planes whose rows are not whole quads (a quad straddles rows).
  const foldArb = (quads: boolean) =>
    fc
      .tuple(
        quads ? fc.oneof(caseArb(true), caseArb(false), fc.constant<Case>({ shape: [2, 3, 2, 6], affine: true, seed: 17 })) : caseArb(false),
        fc.record({ k: fc.constantFrom(2, 3, 4, 2, 4), extra: fc.constantFrom(0, 0, 1), pad: fc.constantFrom(0, 0, 1) }),
      )
      .map(([k, { k: w, extra, pad }]) => ({ k, pl: { k: w, s: w + extra, pad } }));
  for (const { norm, quads } of VARIANTS)
  for (const training of [true, false]) {
    for (const order of [null, 'relu-bn', 'bn-relu'] as const) {
      it(`pool backward folded into the BN backward, ${order ?? 'no ReLU'}, ${training ? 'training' : 'eval'}, ${norm || 'software default'}: bit for bit the unfolded backward, finite differences`, async () => {
        await fc.assert(
          fc.asyncProperty(foldArb(quads), async ({ k, pl }) => {
            if (k.shape[2] + 2 * pl.pad < pl.k || k.shape[3] + 2 * pl.pad < pl.k) return;
            const what = `${JSON.stringify(k)} ${JSON.stringify(pl)}`;
            setKernelOverride([norm, 'fused:fused'].filter(Boolean).join(','));
            const a = await run(k, order, training, pl);
            setKernelOverride([norm, 'fused:fused,fused.bn-pool-bwd:unfused'].filter(Boolean).join(','));
            const u = await run(k, order, training, pl);
            // The same dy values reach the same BN expressions: the gradients are the unfolded ones bit for bit.
            for (const f of ['y', 'dx', 'dgamma', 'dbeta'] as const) if (a[f]) expect(sameBits(a[f]!, u[f]!), `${f} ${what}`).toBe(true);
            const p = inputs(k);
            const fwd = (xv: ArrayLike<number>, gv: ArrayLike<number> | null, bv: ArrayLike<number> | null) => {
              const [n, c, h, w] = k.shape;
              const bn = order ? ref(k, order, training, xv, gv, bv).y : training ? bnTrainRef(xv, n, c, h * w, gv, bv, p.rm, p.rv, 0.1, 1e-5).y : bnEvalRef(xv, n, c, h * w, gv, bv, p.rm, p.rv, 1e-5);
              return maxPool64(bn, k.shape, pl.k, pl.s, pl.pad);
            };
            const coords = sampleCoords(p.xs.length, 8, k.seed);
            expectNear(coords.map((i) => a.dx[i]), finiteDiff((xv) => fwd(xv, p.gamma, p.beta), p.xs, a.dy, coords, 1e-5), 3e-4, `dx vs finite differences ${what}`);
            if (k.affine) {
              const all = [...Array(k.shape[1]).keys()];
              expectNear(a.dgamma!, finiteDiff((gv) => fwd(p.xs, gv, p.beta), p.gamma!, a.dy, all), 2e-4, `dgamma ${what}`);
              expectNear(a.dbeta!, finiteDiff((bv) => fwd(p.xs, p.gamma, bv), p.beta!, a.dy, all), 2e-4, `dbeta ${what}`);
            }
          }),
          { numRuns: 4 },
        );
      });
    }
  }

  /** Dispatches and bytes of a relu-bn + 2x2 pool forward and backward on [4, 8, 16, 16] under `spec`. */
  const countStep = async (spec: string, seed: number) => {
    setKernelOverride(spec);
    queue.startCount();
    await run({ shape: [4, 8, 16, 16], affine: true, seed }, 'relu-bn', true, { k: 2, s: 2, pad: 0 });
    const rows = queue.stopCount();
    return { dispatches: rows.reduce((s, r) => s + r.calls, 0), bytes: rows.reduce((s, r) => s + r.bytesRead + r.bytesWritten, 0) };
  };

  it('folded, the pool backward writes no full-size dy: one dispatch and three activations fewer, two pooled reads more', async () => {
    const folded = await countStep('fused:fused', 9);
    const unfolded = await countStep('fused:fused,fused.bn-pool-bwd:unfused', 9);
    expect(unfolded.dispatches - folded.dispatches).toBe(1);
    // Unfolded: the pool backward reads gy and idx and writes dy; stage 1 and dx each read dy. Folded:
    // stage 1 and dx each read gy and idx. Activation 4 x 8 x 16 x 16 floats, pooled a quarter of it.
    const full = 4 * 4 * 8 * 256;
    expect(unfolded.bytes - folded.bytes).toBe(3 * full - 2 * (full / 4));
  });

  it('the quad walks (2x2 and 4x4 windows over whole vec4 rows) give the unfolded backward bit for bit', async () => {
    for (const q of [2, 4]) {
      for (const training of [true, false]) {
        const k: Case = { shape: [2, 3, 8, 12], affine: true, seed: 31 + q };
        const pl = { k: q, s: q, pad: 0 };
        setKernelOverride('fused:fused');
        const a = await run(k, 'relu-bn', training, pl);
        setKernelOverride('fused:fused,fused.bn-pool-bwd:unfused');
        const u = await run(k, 'relu-bn', training, pl);
        for (const f of ['dx', 'dgamma', 'dbeta'] as const) expect(sameBits(a[f]!, u[f]!), `${f} ${q}x${q} ${training}`).toBe(true);
      }
    }
  });

  it('overlapping windows keep the unfolded backward, whatever the override', () => {
    const g = { n: 2, c: 8, h: 9, w: 9, kh: 3, kw: 3, sh: 2, sw: 2, pad: 0, relu: 'none' as const, training: true };
    setKernelOverride('fused:fused');
    expect(foldPoolBackward(g)).toBe(false);
    expect(foldPoolBackward({ ...g, sh: 3, sw: 3 })).toBe(true);
    setKernelOverride('fused:unfused');
    expect(foldPoolBackward({ ...g, sh: 3, sw: 3 })).toBe(false);
  });

  it('software adapters walk row quads where the windows tile vec4 rows', () => {
    const g = { n: 2, c: 8, h: 32, w: 32, kh: 2, kw: 2, sh: 2, sw: 2, pad: 0, relu: 'relu-bn' as const, training: true };
    expect(plan('fused.bn-pool', g).id).toBe(deviceTraits().isSoftware ? 'fused:quad' : 'fused:window');
    expect(plan('fused.bn-pool', { ...g, kh: 3, kw: 3 }).id).toBe('fused:window');
  });

  it('fused, the BN output is neither written nor read: one dispatch and two activations fewer', async () => {
    // The pool's backward stays unfolded here (fused.bn-pool-bwd: its own test above).
    const fused = await countStep('fused:fused,fused.bn-pool-bwd:unfused', 5);
    const bnOnly = await countStep('fused.bn-relu:fused,fused.bn-pool:unfused', 5);
    expect(bnOnly.dispatches - fused.dispatches).toBe(1);
    // The BN output (4 x 8 x 16 x 16 floats) written by the apply kernel and read by the pool.
    expect(bnOnly.bytes - fused.bytes).toBe(2 * 4 * 4 * 8 * 256);
  });
});

describe('planner: fused and unfused are candidates of one family', () => {
  it('the static rule fuses; fused:unfused forces the separate kernels, and the choice is recorded', () => {
    const g = { n: 2, c: 3, hw: 16, order: 'relu-bn' as const, training: true };
    expect(plan('fused.bn-relu', g).id).toBe('fused');
    expect(plan('fused.bce', { n: 32 }).id).toBe('fused');
    setKernelOverride('fused:unfused');
    resetPlannerRecord();
    expect(plan('fused.bn-relu', g).id).toBe('unfused');
    expect(plan('fused.bce', { n: 32 }).id).toBe('unfused');
    const recorded = Object.fromEntries(Object.entries(plannerRecord()).filter(([key]) => key.startsWith('fused.')));
    expect(Object.values(recorded)).toEqual(['unfused', 'unfused']);
    setKernelOverride(null);
    // What a level recorded (kernels.json) is pinned on --resume: the unfused choice comes back.
    pinKernels(recorded);
    try {
      expect(plan('fused.bn-relu', g).id).toBe('unfused');
      expect(plan('fused.bce', { n: 32 }).source).toBe('pinned');
    } finally {
      clearPins();
    }
    expect(plan('fused.bn-relu', g).id).toBe('fused');
  });

  it('a run recorded before a family whose candidates round differently resumes on its legacy variant', () => {
    const g = { c: 8, relu: 'relu-bn' as const, training: true };
    expect(plan('fused.bn-bias-grad', g).id).toBe('fused');
    // Kernels recorded by older code: other families only.
    pinKernels({ 'norm|f32|dense|n16 c8 hw2^8 q4': 'thread4' });
    try {
      expect(plan('fused.bn-bias-grad', g).id).toBe('unfused');
      expect(plan('fused.conv-bn', { cout: 8, k: 9, rows: 64, relu: false, pool: false }).id).toBe('unfused');
      // Bit-identical families have no legacy variant: they keep their static rule.
      expect(plan('fused.bn-pool-bwd', { n: 2, c: 8, h: 8, w: 8, kh: 2, kw: 2, sh: 2, sw: 2, pad: 0, relu: 'none' as const, training: true }).id).toBe('fused');
      // A run that recorded the family (any of its classes) keeps what it recorded or the static rule.
      pinKernels({ 'fused.bn-bias-grad|f32|dense|relu-bn eval': 'fused' });
      expect(plan('fused.bn-bias-grad', g).id).toBe('fused');
    } finally {
      clearPins();
    }
  });

  it('fusing relu-bn saves the ReLU passes: fewer dispatches and bytes for the same step', async () => {
    const count = async (spec: string) => {
      setKernelOverride(spec);
      const k: Case = { shape: [4, 8, 16, 16], affine: true, seed: 3 };
      queue.startCount();
      await runOp(k, 'relu-bn', true);
      const rows = queue.stopCount();
      setKernelOverride(null);
      return { dispatches: rows.reduce((s, r) => s + r.calls, 0), bytes: rows.reduce((s, r) => s + r.bytesRead + r.bytesWritten, 0) };
    };
    const fused = await count('fused:fused');
    const unfused = await count('fused:unfused');
    // The ReLU forward (read x, write a) and its gradient (read dy and x, write dx) are gone: 2 dispatches
    // and 5 activations of 4 * 8 * 256 floats.
    expect(unfused.dispatches - fused.dispatches).toBe(2);
    expect(unfused.bytes - fused.bytes).toBe(5 * 4 * 4 * 8 * 256);
  });
});

describe('BCE-with-logits fused with its mean', () => {
  afterEach(() => setKernelOverride(null));
  it('matches float64 and the unfused map + sum + scale within float32 rounding, over random sizes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 700 }), fc.integer({ min: 1, max: 1 << 30 }), async (n, seed) => {
        const xs = seededValues(n, seed, -30, 30);
        const ts = Float32Array.from(seededValues(n, seed + 1, 0, 1), (v) => (v > 0.5 ? 1 : 0));
        let want = 0;
        for (let i = 0; i < n; i++) want += Math.max(xs[i], 0) - xs[i] * ts[i] + Math.log1p(Math.exp(-Math.abs(xs[i])));
        want /= n;
        const loss = async (spec: string) => {
          setKernelOverride(spec);
          return noGrad(() => F.bceWithLogits(fromArray(xs, [n, 1]), fromArray(ts, [n]))).item();
        };
        const fused = await loss('fused.bce:fused');
        const unfused = await loss('fused.bce:unfused');
        expect(Math.abs(fused - want)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
        expect(Math.abs(fused - unfused)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
      }),
      { numRuns: 15 },
    );
  });

  it('is one dispatch where the unfused loss takes three', async () => {
    const x = fromArray(seededValues(32, 1), [32, 1]);
    const t = fromArray(new Float32Array(32).fill(1), [32]);
    const dispatches = (spec: string) => {
      setKernelOverride(spec);
      queue.startCount();
      tidy(() => noGrad(() => F.bceWithLogits(x, t)));
      return queue.stopCount().reduce((s, r) => s + r.calls, 0);
    };
    expect(dispatches('fused.bce:fused')).toBe(1);
    expect(dispatches('fused.bce:unfused')).toBe(3);
  });
});

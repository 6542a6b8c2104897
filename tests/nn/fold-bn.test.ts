// Eval-mode batch norm folded into the preceding conv (planner family fused.conv-bn): against a float64
// conv -> BN -> (ReLU) -> (max pool) and the unfolded chain, over random geometries; it folds only
// where no gradient is recorded and nothing hooks the conv or the norm (Grad-CAM's taps).
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { backward, noGrad } from '../../src/autograd/tape.js';
import * as F from '../../src/autograd/functional.js';
import { BatchNorm2d, Conv2d, MaxPool2d } from '../../src/nn/layers.js';
import { fromArray, keep, queue, tidy, type Tensor } from '../../src/tensor/index.js';
import { writeTensor } from '../../src/tensor/io.js';
import { plannerRecord, resetPlannerRecord, setKernelOverride } from '../../src/tensor/plan.js';
import { seededValues } from '../ref/arb.js';
import { bnEvalRef, bnTrainRef, conv2dRef, expectNear, finiteDiff, maxPoolRef, sameBits } from '../ref/conv-ref.js';

interface Case {
  n: number;
  cin: number;
  cout: number;
  h: number;
  w: number;
  k: number;
  stride: number;
  bias: boolean;
  affine: boolean;
  relu: boolean;
  pool: boolean;
  seed: number;
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    n: fc.integer({ min: 1, max: 3 }),
    cin: fc.integer({ min: 1, max: 5 }),
    cout: fc.integer({ min: 1, max: 6 }),
    h: fc.integer({ min: 3, max: 10 }),
    w: fc.integer({ min: 3, max: 10 }),
    k: fc.constantFrom(1, 3),
    stride: fc.constantFrom(1, 2),
    bias: fc.boolean(),
    affine: fc.boolean(),
    relu: fc.boolean(),
    pool: fc.boolean(),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
  });

function build(c: Case) {
  const conv = new Conv2d(c.cin, c.cout, c.k, { padding: (c.k - 1) / 2, stride: c.stride, bias: c.bias });
  const bn = new BatchNorm2d(c.cout, 1e-5, 0.1, c.affine);
  conv.initialize(c.seed);
  bn.initialize(c.seed);
  const host = {
    w: seededValues(conv.weight.size, c.seed + 1),
    b: c.bias ? seededValues(c.cout, c.seed + 2) : null,
    gamma: c.affine ? seededValues(c.cout, c.seed + 3, 0.5, 1.5) : null,
    beta: c.affine ? seededValues(c.cout, c.seed + 4, -0.5, 0.5) : null,
    rm: seededValues(c.cout, c.seed + 5, -1, 1),
    rv: seededValues(c.cout, c.seed + 6, 0.5, 2),
    x: seededValues(c.n * c.cin * c.h * c.w, c.seed + 7),
  };
  writeTensor(conv.weight, host.w);
  if (host.b) writeTensor(conv.bias!, host.b);
  if (host.gamma) writeTensor(bn.weight!, host.gamma);
  if (host.beta) writeTensor(bn.bias!, host.beta);
  writeTensor(bn.runningMean, host.rm);
  writeTensor(bn.runningVar, host.rv);
  conv.eval();
  bn.eval();
  return { conv, bn, host, pool: c.pool ? new MaxPool2d(2, { stride: 2 }) : undefined };
}

/** conv -> BN(eval) -> ReLU -> 2x2 pool in float64. */
function ref(c: Case, host: ReturnType<typeof build>['host']): Float64Array {
  const pad = (c.k - 1) / 2;
  const g = { n: c.n, cin: c.cin, h: c.h, w: c.w, cout: c.cout, kh: c.k, kw: c.k, sh: c.stride, sw: c.stride, dh: 1, dw: 1, pad: [pad, pad, pad, pad] as [number, number, number, number] };
  const oh = Math.floor((c.h + 2 * pad - c.k) / c.stride) + 1;
  const ow = Math.floor((c.w + 2 * pad - c.k) / c.stride) + 1;
  let y = bnEvalRef(conv2dRef(host.x, host.w, host.b, g), c.n, c.cout, oh * ow, host.gamma, host.beta, host.rm, host.rv, 1e-5);
  if (c.relu) y = y.map((v) => Math.max(v, 0));
  if (c.pool) y = maxPoolRef(y, { n: c.n, c: c.cout, h: oh, w: ow, kh: 2, kw: 2, sh: 2, sw: 2, pad: [0, 0, 0, 0] }).y;
  return y;
}

async function run(c: Case, spec: string, grad = false): Promise<Float32Array> {
  const m = build(c);
  setKernelOverride(spec);
  let out!: Tensor;
  const fwd = () => tidy(() => m.bn.afterConv(m.conv, fromArray(m.host.x, [c.n, c.cin, c.h, c.w]), c.relu ? 'bn-relu' : null, m.pool));
  out = grad ? fwd() : noGrad(fwd);
  const y = (await out.toArray()) as Float32Array;
  out.dispose();
  m.conv.dispose();
  m.bn.dispose();
  return y;
}

describe('eval-mode batch norm folded into the conv (fused.conv-bn)', () => {
  afterEach(() => setKernelOverride(null));

  it('matches float64 conv -> BN -> ReLU -> pool and the unfolded chain within float32 rounding', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        if (c.pool && (Math.floor((c.h + c.k - 1 - c.k) / c.stride) + 1 < 2 || Math.floor((c.w + c.k - 1 - c.k) / c.stride) + 1 < 2)) return;
        const folded = await run(c, 'fused.conv-bn:fused');
        const chain = await run(c, 'fused.conv-bn:unfused');
        const m = build(c);
        const want = ref(c, m.host);
        m.conv.dispose();
        m.bn.dispose();
        expectNear(folded, want, 2e-5, `folded vs float64 ${JSON.stringify(c)}`);
        expectNear(folded, chain, 2e-5, `folded vs unfolded ${JSON.stringify(c)}`);
      }),
      { numRuns: 25 },
    );
  });

  it('the static rule folds a BN with neither ReLU nor pool after it; a hook on the conv keeps the chain', async () => {
    const c: Case = { n: 2, cin: 3, cout: 4, h: 8, w: 8, k: 3, stride: 1, bias: true, affine: true, relu: false, pool: false, seed: 11 };
    const folds = async (f: () => Promise<unknown>) => {
      resetPlannerRecord();
      await f();
      return Object.entries(plannerRecord()).filter(([k]) => k.startsWith('fused.conv-bn')).map(([, v]) => v);
    };
    expect(await folds(() => run(c, ''))).toEqual(['fused']);
    expect(await folds(() => run({ ...c, relu: true }, ''))).toEqual(['unfused']);
    expect(await folds(() => run({ ...c, pool: true }, ''))).toEqual(['unfused']);
    expect(await folds(() => run(c, '', true))).toEqual(['fused']);
    // More weights per channel (5 x 3 x 3) than outputs (3 x 3): the fold would move more than it saves.
    expect(await folds(() => run({ ...c, n: 1, cin: 5, h: 3, w: 3 }, ''))).toEqual(['unfused']);
    // A hook on the conv (Grad-CAM's taps) keeps the chain, so the hook sees the conv's output.
    const m = build(c);
    let seen = 0;
    m.conv.registerForwardHook(() => void seen++);
    setKernelOverride('fused.conv-bn:fused');
    resetPlannerRecord();
    noGrad(() => tidy(() => void m.bn.afterConv(m.conv, fromArray(m.host.x, [2, 3, 8, 8]))));
    expect(seen).toBe(1);
    expect(Object.keys(plannerRecord()).some((k) => k.startsWith('fused.conv-bn'))).toBe(false);
    m.conv.dispose();
    m.bn.dispose();
  });

  it('folded with gradients recorded: the same output bits as without, and the chain\'s gradients of x, W, b, gamma, beta', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        if (c.pool && (Math.floor((c.h - 1) / c.stride) + 1 < 2 || Math.floor((c.w - 1) / c.stride) + 1 < 2)) return;
        const what = JSON.stringify(c);
        const gradsOf = async (spec: string) => {
          const m = build(c);
          setKernelOverride(spec);
          const x = fromArray(m.host.x, [c.n, c.cin, c.h, c.w]);
          x.requiresGrad = true;
          const params = [x, m.conv.weight, m.conv.bias, m.bn.weight, m.bn.bias].filter((t): t is Tensor => !!t);
          for (const p of params) p.requiresGrad = true;
          // Forward and backward in one scope: the chain's intermediate must live until its backward.
          const out = tidy(() => {
            const o = keep(m.bn.afterConv(m.conv, x, c.relu ? 'bn-relu' : null, m.pool));
            backward(F.sum(F.mul(o, fromArray(seededValues(o.size, c.seed + 9), o.shape))));
            return o;
          });
          const y = (await out.toArray()) as Float32Array;
          const g = await Promise.all(params.map(async (p, i) => { if (!p.grad) throw new Error(`no grad for param ${i} under ${spec}`); return (await p.grad.toArray()) as Float32Array; }));
          for (const p of params) p.grad?.dispose();
          out.dispose();
          x.dispose();
          m.conv.dispose();
          m.bn.dispose();
          return { y, g };
        };
        const folded = await gradsOf('fused.conv-bn:fused');
        const chain = await gradsOf('fused.conv-bn:unfused');
        expect(sameBits(folded.y, await run(c, 'fused.conv-bn:fused')), `folded output with and without gradients ${what}`).toBe(true);
        folded.g.forEach((g, i) => expectNear(g, chain.g[i], 5e-5, `gradient ${i} (x, W, b, gamma, beta) ${what}`));
      }),
      { numRuns: 15 },
    );
  });

  it('folded, the BN pass over the activation is gone: a pass over the weights instead', async () => {
    const c: Case = { n: 4, cin: 8, cout: 8, h: 16, w: 16, k: 3, stride: 1, bias: false, affine: true, relu: false, pool: false, seed: 5 };
    const count = async (spec: string) => {
      queue.startCount();
      await run(c, spec);
      const rows = queue.stopCount();
      return rows.reduce((s, r) => s + r.bytesRead + r.bytesWritten, 0);
    };
    const folded = await count('fused.conv-bn:fused');
    const chain = await count('fused.conv-bn:unfused');
    const act = 4 * 4 * 8 * 16 * 16;
    // Unfolded: the BN apply reads the conv's output and writes its own (plus 4 vectors of 8). Folded:
    // reads the weights and 4 vectors, writes the folded weights and bias; the conv reads the bias.
    const w = 4 * 8 * 8 * 9;
    expect(chain - folded).toBe(2 * act + 4 * 4 * 8 - (2 * w + 4 * 4 * 8 + 4 * 8 + 4 * 8));
  });
});

// The conv bias's gradient delivered by the BN backward (fused.bn-bias-grad): conv -> (ReLU) -> BN ->
// max pool through BatchNorm2d.afterConv with gradients, training and eval mode, against the conv's own
// per-channel sum over dx and float64 finite differences of the whole chain.
describe("the conv bias's gradient from the BN backward (fused.bn-bias-grad)", () => {
  afterEach(() => setKernelOverride(null));
  const biasArb = fc.record({
    n: fc.integer({ min: 1, max: 3 }),
    cin: fc.integer({ min: 1, max: 3 }),
    cout: fc.integer({ min: 1, max: 5 }),
    h: fc.integer({ min: 2, max: 9 }),
    w: fc.integer({ min: 2, max: 9 }),
    order: fc.constantFrom<'relu-bn' | 'bn-relu' | null>('relu-bn', 'bn-relu', null),
    training: fc.boolean(),
    affine: fc.boolean(),
    masked: fc.boolean(),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
  });
  type BiasCase = typeof biasArb extends fc.Arbitrary<infer T> ? T : never;

  /** Host values: x, conv weight and bias, BN gamma/beta/running stats, the pooled output's dy, a 0/1 mask. */
  const hostOf = (c: BiasCase) => ({
    x: seededValues(c.n * c.cin * c.h * c.w, c.seed, -2, 2),
    w: seededValues(c.cout * c.cin * 9, c.seed + 1),
    b: seededValues(c.cout, c.seed + 2),
    gamma: seededValues(c.cout, c.seed + 3, 0.5, 1.5),
    beta: seededValues(c.cout, c.seed + 4, -0.5, 0.5),
    rm: seededValues(c.cout, c.seed + 5, -0.5, 0.5),
    rv: seededValues(c.cout, c.seed + 6, 0.5, 2),
    dy: seededValues(c.n * c.cout * Math.floor(c.h / 2) * Math.floor(c.w / 2), c.seed + 7),
    mask: Float32Array.from(seededValues(c.cout * c.cin * 9, c.seed + 8, 0, 1), (v) => (v < 0.3 ? 0 : 1)),
  });

  async function grads(c: BiasCase, spec: string) {
    const h = hostOf(c);
    const conv = new Conv2d(c.cin, c.cout, 3, { padding: 1 });
    const bn = new BatchNorm2d(c.cout, 1e-5, 0.1, c.affine);
    conv.initialize(1);
    bn.initialize(1);
    writeTensor(conv.weight, h.w);
    writeTensor(conv.bias!, h.b);
    if (c.affine) {
      writeTensor(bn.weight!, h.gamma);
      writeTensor(bn.bias!, h.beta);
    }
    writeTensor(bn.runningMean, h.rm);
    writeTensor(bn.runningVar, h.rv);
    if (c.masked) conv.mask = fromArray(h.mask, conv.weight.shape);
    if (!c.training) bn.eval();
    for (const p of [...conv.parameters(), ...bn.parameters()]) p.requiresGrad = true;
    setKernelOverride(spec);
    resetPlannerRecord();
    tidy(() => {
      const y = bn.afterConv(conv, fromArray(h.x, [c.n, c.cin, c.h, c.w]), c.order, new MaxPool2d(2, { stride: 2 }));
      backward(F.sum(F.mul(y, fromArray(h.dy, y.shape))));
    });
    const folded = plannerRecord();
    const out = {
      db: (await conv.bias!.grad!.toArray()) as Float32Array,
      dw: (await conv.weight.grad!.toArray()) as Float32Array,
      dgamma: c.affine ? ((await bn.weight!.grad!.toArray()) as Float32Array) : null,
      folded: Object.entries(folded).filter(([k]) => k.startsWith('fused.bn-bias-grad')).map(([, v]) => v),
    };
    conv.mask?.dispose();
    conv.dispose();
    bn.dispose();
    return { ...out, h };
  }

  /** The chain in float64 as a function of the conv bias. */
  function chain64(c: BiasCase, h: ReturnType<typeof hostOf>, b: ArrayLike<number>): Float64Array {
    const g = { n: c.n, cin: c.cin, h: c.h, w: c.w, cout: c.cout, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pad: [1, 1, 1, 1] as [number, number, number, number] };
    const wm = c.masked ? h.w.map((v, i) => v * h.mask[i]) : h.w;
    let y = conv2dRef(h.x, wm, b, g);
    const relu = (v: Float64Array) => v.map((t) => Math.max(t, 0));
    if (c.order === 'relu-bn') y = relu(y);
    const hw = c.h * c.w;
    const gm = c.affine ? h.gamma : null;
    const bt = c.affine ? h.beta : null;
    y = c.training ? bnTrainRef(y, c.n, c.cout, hw, gm, bt, h.rm, h.rv, 0.1, 1e-5).y : bnEvalRef(y, c.n, c.cout, hw, gm, bt, h.rm, h.rv, 1e-5);
    if (c.order === 'bn-relu') y = relu(y);
    return maxPoolRef(y, { n: c.n, c: c.cout, h: c.h, w: c.w, kh: 2, kw: 2, sh: 2, sw: 2, pad: [0, 0, 0, 0] }).y;
  }

  // The software default (a thread per chunk) and the GPUs' workgroup tree for stage 1.
  for (const norm of ['', 'norm:group,bn.apply:scalar,'])
  it(`matches the unfused sum over dx within float32 rounding and float64 finite differences; the other gradients bit for bit (${norm || 'software default'})`, async () => {
    await fc.assert(
      fc.asyncProperty(biasArb, async (c) => {
        const what = JSON.stringify(c);
        const a = await grads(c, `${norm}fused.bn-bias-grad:fused`);
        const u = await grads(c, `${norm}fused.bn-bias-grad:unfused`);
        expect(a.folded, what).toEqual(['fused']);
        expect(u.folded, what).toEqual(['unfused']);
        expect(sameBits(a.dw, u.dw), `dw ${what}`).toBe(true);
        if (a.dgamma) expect(sameBits(a.dgamma, u.dgamma!), `dgamma ${what}`).toBe(true);
        expectNear(a.db, u.db, 1e-5, `db folded vs unfolded ${what}`);
        const all = [...Array(c.cout).keys()];
        // Training BN with the ReLU after it (or none) makes the bias's gradient ~0 up to the ReLU's
        // mask; the relative check's floor of 1 makes that an absolute one.
        expectNear(a.db, finiteDiff((bv) => chain64(c, a.h, bv), a.h.b, a.h.dy, all, 1e-6), 3e-3, `db vs finite differences ${what}`);
      }),
      { numRuns: norm ? 4 : 12 },
    );
  });
});

// conv + bias + ReLU with the ReLU in the conv kernel's store (fused.conv-relu) against the unfused
// conv -> relu chain (bit for bit: max(a, 0) is exact and the mask y > 0 is the mask x > 0), a float64
// reference, and finite differences; the dispatch and bytes it saves; its fallbacks.
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { backward } from '../../src/autograd/tape.js';
import * as F from '../../src/autograd/functional.js';
import * as FN from '../../src/autograd/functional-nn.js';
import { conv2dRelu } from '../../src/autograd/fused-nn.js';
import { Conv2d } from '../../src/nn/layers.js';
import { createModel } from '../../src/nn/models/index.js';
import { fromArray, keep, tidy, queue, type Tensor } from '../../src/tensor/index.js';
import { conv2dGeometry, type Conv2dOptions } from '../../src/tensor/ops/conv.js';
import { fuseConvRelu } from '../../src/tensor/ops/fused.js';
import { clearPins, deviceTraits, pinKernels, plan, plannerRecord, resetPlannerRecord, setKernelOverride } from '../../src/tensor/plan.js';
import { convStripKernel } from '../../src/shaders/conv-strip.js';
import { conv2dDirectForwardKernel } from '../../src/shaders/conv-direct.js';
import { conv2dForwardKernel } from '../../src/shaders/conv.js';
import { seededValues } from '../ref/arb.js';
import { conv2dBackwardInputRef, conv2dBackwardWeightRef, conv2dRef, channelSumRef, convOut, expectNear, finiteDiff, sameBits, sampleCoords, type ConvRefGeom } from '../ref/conv-ref.js';

interface Case {
  n: number;
  cin: number;
  cout: number;
  h: number;
  w: number;
  k: number;
  stride: number;
  pad: number;
  bias: boolean;
  seed: number;
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    n: fc.constantFrom(1, 2, 3),
    cin: fc.integer({ min: 1, max: 4 }),
    cout: fc.constantFrom(1, 3, 4, 8, 11),
    h: fc.integer({ min: 1, max: 10 }),
    // Whole vec4 rows half the time, so stride-1 cases reach the strip kernels on software adapters.
    w: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.constantFrom(4, 8, 12)),
    k: fc.integer({ min: 1, max: 5 }),
    stride: fc.constantFrom(1, 1, 2, 3),
    pad: fc.integer({ min: 0, max: 2 }),
    bias: fc.boolean(),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
  })
  .filter((c) => c.pad < c.k && c.h + 2 * c.pad >= c.k && c.w + 2 * c.pad >= c.k);

const opts = (c: Case): Conv2dOptions => ({ stride: c.stride, padding: c.pad });
const geom = (c: Case): ConvRefGeom => ({ n: c.n, cin: c.cin, h: c.h, w: c.w, cout: c.cout, kh: c.k, kw: c.k, sh: c.stride, sw: c.stride, dh: 1, dw: 1, pad: [c.pad, c.pad, c.pad, c.pad] });

function inputs(c: Case) {
  const [oh, ow] = convOut(geom(c));
  return {
    xs: seededValues(c.n * c.cin * c.h * c.w, c.seed),
    ws: seededValues(c.cout * c.cin * c.k * c.k, c.seed + 1, -1, 1),
    bs: c.bias ? seededValues(c.cout, c.seed + 2, -0.5, 0.5) : null,
    dys: seededValues(c.n * c.cout * oh * ow, c.seed + 3),
  };
}

interface Run {
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
  db: Float32Array | null;
}

/** y = op(x, w, b) and the gradients of sum(y * dy), through autograd. */
async function run(c: Case, op: (x: Tensor, w: Tensor, b: Tensor | null) => Tensor): Promise<Run> {
  const p = inputs(c);
  const leaf = (v: Float32Array, s: number[]) => {
    const t = keep(fromArray(v, s));
    t.requiresGrad = true;
    return t;
  };
  const x = leaf(p.xs, [c.n, c.cin, c.h, c.w]);
  const w = leaf(p.ws, [c.cout, c.cin, c.k, c.k]);
  const b = p.bs ? leaf(p.bs, [c.cout]) : null;
  let y!: Tensor;
  tidy(() => {
    const out = op(x, w, b);
    y = keep(out);
    backward(F.sum(F.mul(out, fromArray(p.dys, out.shape))));
  });
  const r: Run = {
    y: (await y.toArray()) as Float32Array,
    dx: (await x.grad!.toArray()) as Float32Array,
    dw: (await w.grad!.toArray()) as Float32Array,
    db: b ? ((await b.grad!.toArray()) as Float32Array) : null,
  };
  for (const t of [x, w, b]) t?.grad?.dispose();
  for (const t of [x, w, b, y]) t?.dispose();
  return r;
}

const fused = (c: Case) => (x: Tensor, w: Tensor, b: Tensor | null) => conv2dRelu(x, w, b, opts(c));
const chain = (c: Case) => (x: Tensor, w: Tensor, b: Tensor | null) => F.relu(FN.conv2d(x, w, b, opts(c)));

/** The float64 relu(conv) as a function of x, w or b alone. */
function ref64(c: Case, which: 'x' | 'w' | 'b') {
  const p = inputs(c);
  return (v: Float64Array) => {
    const y = conv2dRef(which === 'x' ? v : p.xs, which === 'w' ? v : p.ws, which === 'b' ? v : p.bs, geom(c));
    return y.map((e) => Math.max(e, 0));
  };
}

// Every dense forward kernel with the epilogue: the direct and tiled ones forced, and the adapter's
// default (row strips on software adapters where the rows are whole vec4s at stride 1).
const CONV_SPECS = ['conv.fwd:direct', 'conv.fwd:tiled', ''] as const;

afterEach(() => setKernelOverride(null));

describe('conv2dRelu: the ReLU in the conv kernel store', () => {
  for (const spec of CONV_SPECS) {
    it(`${spec || 'software default'}: bit for bit the conv -> relu chain, forward and gradients; float64 and finite differences`, async () => {
      let fdChecked = 0;
      await fc.assert(
        fc.asyncProperty(caseArb, async (c) => {
          const g = conv2dGeometry([c.n, c.cin, c.h, c.w], [c.cout, c.cin, c.k, c.k], opts(c));
          setKernelOverride([spec, 'fused.conv-relu:fused'].filter(Boolean).join(','));
          expect(fuseConvRelu(g, c.bias)).toBe(true);
          const a = await run(c, fused(c));
          setKernelOverride([spec, 'fused.conv-relu:unfused'].filter(Boolean).join(','));
          expect(fuseConvRelu(g, c.bias)).toBe(false);
          const u = await run(c, fused(c));
          setKernelOverride(spec || null);
          const ch = await run(c, chain(c));
          for (const f of ['y', 'dx', 'dw', 'db'] as const) {
            if (!a[f]) continue;
            expect(sameBits(a[f]!, u[f]!), `${f} fused vs unfused candidate`).toBe(true);
            expect(sameBits(a[f]!, ch[f]!), `${f} fused vs conv2d -> relu`).toBe(true);
          }
          // Float64: the forward, and the conv's backward of dy masked where the float32 output is > 0
          // (the float64 conv may sit on the other side of 0 for outputs within rounding of it).
          const p = inputs(c);
          const conv64 = conv2dRef(p.xs, p.ws, p.bs, geom(c));
          expectNear(a.y, conv64.map((e) => Math.max(e, 0)), 1e-5, 'y');
          const gm = Float64Array.from(p.dys, (d, i) => (a.y[i] > 0 ? d : 0));
          expectNear(a.dx, conv2dBackwardInputRef(gm, p.ws, geom(c)), 1e-4, 'dx');
          expectNear(a.dw, conv2dBackwardWeightRef(gm, p.xs, geom(c)), 1e-4, 'dw');
          const [oh, ow] = convOut(geom(c));
          if (a.db) expectNear(a.db, channelSumRef(gm, c.n, c.cout, oh * ow), 1e-4, 'db');
          // Finite differences where no output lies within a step's reach of the ReLU's kink.
          if (conv64.every((e) => Math.abs(e) > 1e-3)) {
            fdChecked++;
            const pts = (n: number) => sampleCoords(n, 12, c.seed);
            const fx = pts(p.xs.length);
            expectNear(fx.map((i) => a.dx[i]), finiteDiff(ref64(c, 'x'), p.xs, p.dys, fx), 1e-3, 'dx vs finite differences');
            const fw = pts(p.ws.length);
            expectNear(fw.map((i) => a.dw[i]), finiteDiff(ref64(c, 'w'), p.ws, p.dys, fw), 1e-3, 'dw vs finite differences');
            if (p.bs) {
              const fb = pts(p.bs.length);
              expectNear(fb.map((i) => a.db![i]), finiteDiff(ref64(c, 'b'), p.bs, p.dys, fb), 1e-3, 'db vs finite differences');
            }
          }
        }),
        { numRuns: 12, seed: 2101 },
      );
      expect(fdChecked).toBeGreaterThan(0);
    });
  }

  it('the software default reaches the strip kernels at stride 1 over whole vec4 rows, and the epilogue is on', () => {
    const g = conv2dGeometry([2, 3, 8, 8], [4, 3, 3, 3], { padding: 1 });
    expect(plan('conv.fwd', g).variant).toBe(deviceTraits().isSoftware ? 'strip' : 'tiled');
    expect(fuseConvRelu(g, true)).toBe(true);
  });

  it('kernels with the ReLU have names of their own (pipeline cache keys)', () => {
    const names = (relu: boolean) => [
      convStripKernel({ wg: 64, px: 8, bn: 4 }, 3, 1, true, relu).name,
      conv2dDirectForwardKernel(true, undefined, relu).name,
      conv2dForwardKernel(false, { bm: 64, bn: 8, tm: 4, tn: 2, bk: 32 }, relu).name,
    ];
    const [off, on] = [names(false), names(true)];
    for (let i = 0; i < on.length; i++) expect(on[i]).not.toBe(off[i]);
  });

  it('fused saves the ReLU forward pass: one dispatch and two activations (its read and write) per site', async () => {
    const c: Case = { n: 2, cin: 3, cout: 8, h: 16, w: 16, k: 3, stride: 1, pad: 1, bias: true, seed: 5 };
    const count = async (spec: string) => {
      setKernelOverride(spec);
      queue.startCount();
      await run(c, fused(c));
      const rows = queue.stopCount();
      return { dispatches: rows.reduce((s, r) => s + r.calls, 0), bytes: rows.reduce((s, r) => s + r.bytesRead + r.bytesWritten, 0) };
    };
    const f = await count('fused.conv-relu:fused');
    const u = await count('fused.conv-relu:unfused');
    expect(u.dispatches - f.dispatches).toBe(1);
    // The backward's mask reads dy and y (fused) or dy and the conv's output (unfused): the same bytes.
    expect(u.bytes - f.bytes).toBe(2 * 4 * (2 * 8 * 16 * 16));
  });

  it('fused:unfused selects the chain and the choice is recorded', () => {
    const g = conv2dGeometry([1, 2, 6, 6], [3, 2, 3, 3], {});
    setKernelOverride('fused:unfused');
    resetPlannerRecord();
    expect(fuseConvRelu(g, false)).toBe(false);
    const recorded = Object.entries(plannerRecord()).filter(([k]) => k.startsWith('fused.conv-relu'));
    expect(recorded.map(([, v]) => v)).toEqual(['unfused']);
  });

  it('same bits, so no legacy variant: a run recorded before the family resumes on the fused path', () => {
    const g = conv2dGeometry([1, 2, 6, 6], [3, 2, 3, 3], {});
    pinKernels({ 'norm|f32|dense|n16 c8 hw2^8 q4': 'thread4' });
    try {
      expect(fuseConvRelu(g, true)).toBe(true);
    } finally {
      clearPins();
    }
  });

  it('Conv2d.forwardRelu: a hooked layer runs the chain, and its hook sees the conv output before the ReLU', async () => {
    const conv = new Conv2d(2, 3, 3, { padding: 1 });
    conv.initialize(7);
    const x = keep(fromArray(seededValues(2 * 2 * 5 * 5, 11), [2, 2, 5, 5]));
    const plainY = keep(conv.forwardRelu(x));
    let seen: Float32Array | null = null;
    const seenT: Tensor[] = [];
    const h = conv.registerForwardHook((_m, _x, y) => {
      seenT.push(keep(y));
    });
    const hookedY = keep(conv.forwardRelu(x));
    h.remove();
    seen = (await seenT[0].toArray()) as Float32Array;
    const a = (await plainY.toArray()) as Float32Array;
    expect(sameBits(a, (await hookedY.toArray()) as Float32Array)).toBe(true);
    expect(seen.some((v) => v < 0)).toBe(true);
    for (const t of [x, plainY, hookedY, ...seenT]) t.dispose();
  });
});

describe('MesoInception-4 with fused branch ReLUs', () => {
  it('a training step gives the unfused model bit for bit: logits and every gradient (so --resume needs no legacy pin)', async () => {
    const step = async (spec: string) => {
      setKernelOverride(spec);
      const m = createModel('mesoinception4', { size: 32, seed: 3 });
      m.train();
      const x = keep(fromArray(seededValues(2 * 3 * 32 * 32, 17), [2, 3, 32, 32]));
      let logits!: Tensor;
      tidy(() => {
        const y = m.forward(x);
        logits = keep(y);
        backward(F.sum(F.mul(y, fromArray(seededValues(y.size, 19), y.shape))));
      });
      const out: Float32Array[] = [(await logits.toArray()) as Float32Array];
      for (const [, p] of m.namedParameters()) out.push((await p.grad!.toArray()) as Float32Array);
      for (const t of [x, logits]) t.dispose();
      m.dispose();
      return out;
    };
    resetPlannerRecord();
    const a = await step('fused.conv-relu:fused');
    const chosen = Object.entries(plannerRecord()).filter(([k]) => k.startsWith('fused.conv-relu'));
    expect(chosen.length).toBeGreaterThan(0);
    expect(chosen.every(([, v]) => v === 'fused')).toBe(true);
    const u = await step('fused.conv-relu:unfused');
    expect(a.length).toBe(u.length);
    for (let i = 0; i < a.length; i++) expect(sameBits(a[i], u[i]), `tensor ${i}`).toBe(true);
  });
});

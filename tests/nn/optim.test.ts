import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromArray, keep, type Tensor } from '../../src/tensor/index.js';
import { Optimizer, type OptimizerConfig } from '../../src/nn/optim/optimizer.js';
import { plan, withKernels } from '../../src/tensor/plan.js';
import { lrAt, parseSchedule } from '../../src/nn/optim/schedule.js';
import { expectClose, seededValues } from '../ref/arb.js';

/** Float64 reference of torch.optim's update rules, one parameter, several steps. */
function refSteps(c: OptimizerConfig, w0: Float32Array, grads: Float32Array[], mask?: Float32Array): Float64Array {
  const w = Float64Array.from(w0);
  const n = w.length;
  const s1 = new Float64Array(n);
  const s2 = new Float64Array(n);
  const wd = c.weightDecay ?? 0;
  const [b1, b2] = c.betas ?? [0.9, 0.999];
  const eps = c.eps ?? 1e-8;
  const mom = c.momentum ?? 0;
  const damp = c.dampening ?? 0;
  if (mask) for (let i = 0; i < n; i++) w[i] *= mask[i];
  grads.forEach((gr, k) => {
    const t = k + 1;
    for (let i = 0; i < n; i++) {
      const m = mask ? mask[i] : 1;
      if (c.kind === 'sgd') {
        let g = (gr[i] + wd * w[i]) * m;
        if (mom !== 0) {
          s1[i] = t === 1 ? g : mom * s1[i] + (1 - damp) * g;
          s1[i] *= m;
          g = c.nesterov ? g + mom * s1[i] : s1[i];
        }
        w[i] = (w[i] - c.lr * g) * m;
      } else {
        let wi = w[i];
        let g = gr[i];
        if (c.kind === 'adam') g += wd * wi;
        else wi *= 1 - c.lr * wd;
        g *= m;
        s1[i] = (b1 * s1[i] + (1 - b1) * g) * m;
        s2[i] = (b2 * s2[i] + (1 - b2) * g * g) * m;
        const mh = s1[i] / (1 - b1 ** t);
        const vh = s2[i] / (1 - b2 ** t);
        w[i] = (wi - (c.lr * mh) / (Math.sqrt(vh) + eps)) * m;
      }
    }
  });
  return w;
}

const cfgArb: fc.Arbitrary<OptimizerConfig> = fc.oneof(
  fc.record({
    kind: fc.constant('sgd' as const),
    lr: fc.constantFrom(0.1, 0.01),
    momentum: fc.constantFrom(0, 0.9),
    weightDecay: fc.constantFrom(0, 1e-3),
    nesterov: fc.constant(false),
  }),
  fc.record({ kind: fc.constant('sgd' as const), lr: fc.constant(0.05), momentum: fc.constant(0.9), nesterov: fc.constant(true) }),
  fc.record({ kind: fc.constantFrom('adam' as const, 'adamw' as const), lr: fc.constantFrom(1e-3, 1e-2), weightDecay: fc.constantFrom(0, 0.01) }),
);

function setGrad(p: Tensor, g: Float32Array): void {
  p.grad?.dispose();
  p.grad = keep(fromArray(g, p.shape));
}

describe('fused optimizers', () => {
  it('SGD / Nesterov / Adam / AdamW match the float64 reference of torch.optim', async () => {
    await fc.assert(
      fc.asyncProperty(cfgArb, fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 5 }), fc.integer(), async (cfg, n, steps, seed) => {
        const w0 = seededValues(n, seed);
        const grads = Array.from({ length: steps }, (_, k) => seededValues(n, seed + 17 * (k + 1)));
        const p = keep(fromArray(w0));
        p.requiresGrad = true;
        const opt = new Optimizer([p], cfg);
        for (const g of grads) {
          setGrad(p, g);
          opt.step();
        }
        expectClose(await p.toArray(), refSteps(cfg, w0, grads), 2e-5, 2e-6, cfg.kind);
        opt.dispose();
        p.dispose();
      }),
      { numRuns: 25 },
    );
  });

  it('masked: pruned weights and all their state are exactly zero after any steps of any optimizer', async () => {
    await fc.assert(
      fc.asyncProperty(
        cfgArb,
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer(),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (cfg, n, steps, seed, density) => {
          const w0 = seededValues(n, seed);
          const maskHost = seededValues(n, seed + 5, 0, 1).map((u) => (u < density ? 1 : 0));
          const grads = Array.from({ length: steps }, (_, k) => seededValues(n, seed + 31 * (k + 1), -5, 5));
          const p = keep(fromArray(w0));
          p.requiresGrad = true;
          const opt = new Optimizer([p], cfg);
          // Warm the state up unmasked first: the mask must also clear state that was non-zero.
          setGrad(p, grads[0]);
          opt.step();
          const mask = keep(fromArray(maskHost));
          opt.setMask(p, mask);
          for (const g of grads) {
            setGrad(p, g);
            opt.step();
          }
          const w = await p.toArray();
          const { s1, s2 } = opt.stateOf(p);
          const [m1, m2] = [await s1.toArray(), await s2.toArray()];
          for (let i = 0; i < n; i++) {
            if (maskHost[i] === 0) {
              expect(Object.is(w[i], 0) || w[i] === 0).toBe(true);
              expect(m1[i]).toBe(0);
              expect(m2[i]).toBe(0);
            }
          }
          opt.dispose();
          p.dispose();
          mask.dispose();
        },
      ),
      { numRuns: 30 },
    );
  });

  it('masked updates of surviving weights match the reference with the mask applied', async () => {
    const n = 64;
    const w0 = seededValues(n, 3);
    const maskHost = seededValues(n, 4, 0, 1).map((u) => (u < 0.5 ? 1 : 0));
    const grads = [seededValues(n, 5), seededValues(n, 6), seededValues(n, 7)];
    const cfg: OptimizerConfig = { kind: 'adam', lr: 1e-2 };
    const p = keep(fromArray(w0));
    p.requiresGrad = true;
    const opt = new Optimizer([p], cfg);
    opt.setMask(p, keep(fromArray(maskHost)));
    for (const g of grads) {
      setGrad(p, g);
      opt.step();
    }
    expectClose(await p.toArray(), refSteps(cfg, w0, grads, maskHost), 2e-5, 2e-6, 'masked adam');
  });

  it('the vec4 kernels give the scalar kernels\' bits (weights and both states), masked or not; other sizes stay scalar', async () => {
    expect(withKernels('optim:vec4', () => plan('optim', { n: 12 }).variant)).toBe('vec4');
    expect(plan('optim', { n: 13 }).variant).toBe('scalar');
    await fc.assert(
      fc.asyncProperty(cfgArb, fc.integer({ min: 1, max: 80 }), fc.boolean(), fc.integer(), async (cfg, quads, masked, seed) => {
        const n = 4 * quads;
        const w0 = seededValues(n, seed);
        const maskHost = seededValues(n, seed + 5, 0, 1).map((u) => (u < 0.6 ? 1 : 0));
        const grads = [1, 2, 3].map((k) => seededValues(n, seed + 31 * k, -5, 5));
        const run = async (variant: string) => {
          const p = keep(fromArray(w0));
          p.requiresGrad = true;
          const opt = new Optimizer([p], cfg);
          const mask = keep(fromArray(maskHost));
          withKernels(`optim:${variant}`, () => {
            setGrad(p, grads[0]);
            opt.step(); // state warmed up unmasked, so the mask has non-zero state to clear
            if (masked) opt.setMask(p, mask);
            for (const g of grads.slice(1)) {
              setGrad(p, g);
              opt.step();
            }
          });
          const { s1, s2 } = opt.stateOf(p);
          const out = [await p.toArray(), await s1.toArray(), await s2.toArray()].map((a) => Array.from(new Uint32Array(a.buffer.slice(0))));
          opt.dispose();
          p.dispose();
          mask.dispose();
          return out;
        };
        expect(await run('vec4')).toEqual(await run('scalar'));
      }),
      { numRuns: 24 },
    );
  });

  it('reset() clears moments and the step count', async () => {
    const p = keep(fromArray([1, 2, 3]));
    p.requiresGrad = true;
    const opt = new Optimizer([p], { kind: 'adam', lr: 0.1 });
    setGrad(p, Float32Array.from([1, 1, 1]));
    opt.step();
    opt.reset();
    expect(opt.stepCount).toBe(0);
    expect(Array.from(await opt.stateOf(p).s1.toArray())).toEqual([0, 0, 0]);
    expect(() => new Optimizer([p], { kind: 'sgd', lr: 0 })).toThrow(/learning rate 0/);
  });
});

describe('learning-rate schedules', () => {
  it('step, cosine and warm-up', () => {
    expect(lrAt(1, 0, { schedule: { kind: 'step', stepSize: 10, gamma: 0.5 } })).toBe(1);
    expect(lrAt(1, 25, { schedule: { kind: 'step', stepSize: 10, gamma: 0.5 } })).toBe(0.25);
    expect(lrAt(2, 0, { schedule: { kind: 'cosine', totalSteps: 100 } })).toBeCloseTo(2);
    expect(lrAt(2, 50, { schedule: { kind: 'cosine', totalSteps: 100 } })).toBeCloseTo(1);
    expect(lrAt(2, 100, { schedule: { kind: 'cosine', totalSteps: 100 } })).toBeCloseTo(0);
    expect(lrAt(1, 0, { schedule: { kind: 'constant' }, warmupSteps: 4 })).toBe(0.25);
    expect(lrAt(1, 3, { schedule: { kind: 'constant' }, warmupSteps: 4 })).toBe(1);
    expect(parseSchedule('step:100:0.1', 1)).toEqual({ kind: 'step', stepSize: 100, gamma: 0.1 });
    expect(() => parseSchedule('linear', 1)).toThrow(/^parseSchedule: spec 'linear' is not one of/);
  });
});

// The multi-tensor optimizer kernel (planner family 'optim', variant 'multi') against the per-tensor
// kernels: the same bits for weights and both moments, over random parameter lists (sizes, masks,
// per-parameter weight decay and lr, parameters without a gradient in a step) and every optimizer.
// Lists run past the adapter's binding limit, so the dispatch is split into chunks too.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromArray, keep, queue, type Tensor } from '../../src/tensor/index.js';
import { Optimizer, type OptimizerConfig } from '../../src/nn/optim/optimizer.js';
import { plan, withKernels } from '../../src/tensor/plan.js';
import { device } from '../../src/tensor/device.js';
import { writeTensor } from '../../src/tensor/io.js';
import { seededValues } from '../ref/arb.js';

const cfgArb: fc.Arbitrary<OptimizerConfig> = fc.oneof(
  fc.record({
    kind: fc.constant('sgd' as const),
    lr: fc.constantFrom(0.1, 0.01),
    momentum: fc.constantFrom(0, 0.9),
    dampening: fc.constantFrom(0, 0.1),
    weightDecay: fc.constantFrom(0, 1e-3),
    nesterov: fc.constant(false),
  }),
  fc.record({ kind: fc.constant('sgd' as const), lr: fc.constant(0.05), momentum: fc.constant(0.9), nesterov: fc.constant(true), weightDecay: fc.constantFrom(0, 5e-4) }),
  fc.record({ kind: fc.constantFrom('adam' as const, 'adamw' as const), lr: fc.constantFrom(1e-3, 1e-2), weightDecay: fc.constantFrom(0, 0.01) }),
);

interface ParamSpec {
  n: number;
  /** Density of its mask, or null when unmasked. */
  density: number | null;
  weightDecay: number | null;
  lrScale: number | null;
}

const paramArb: fc.Arbitrary<ParamSpec> = fc.record({
  // Now and then past one r8 workgroup (8,192 elements), so a segment spans several.
  n: fc.oneof(
    { arbitrary: fc.constantFrom(1, 2, 3, 4, 5, 8, 16, 17, 64, 255, 256, 1024, 1025), weight: 4 },
    { arbitrary: fc.integer({ min: 1, max: 300 }), weight: 4 },
    { arbitrary: fc.integer({ min: 8100, max: 17000 }), weight: 1 },
  ),
  density: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
  weightDecay: fc.option(fc.constantFrom(0, 1e-2, 0.3), { nil: null }),
  lrScale: fc.option(fc.constantFrom(0, 0.5, 2), { nil: null }),
});

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength)));

/** Runs `steps` updates of the list under a kernel override; the bits of every weight and moment after. */
async function runList(variant: string, cfg: OptimizerConfig, specs: readonly ParamSpec[], steps: number, seed: number): Promise<number[][]> {
  const params = specs.map((s, i) => {
    const p = keep(fromArray(seededValues(s.n, seed + 101 * i)));
    p.requiresGrad = true;
    return p;
  });
  const opt = new Optimizer(params, cfg);
  const masks: Tensor[] = [];
  withKernels(`optim:${variant}`, () => {
    specs.forEach((s, i) => {
      if (s.weightDecay !== null || s.lrScale !== null) opt.setParamOptions(params[i], { weightDecay: s.weightDecay ?? undefined, lrScale: s.lrScale ?? undefined });
    });
    for (let t = 0; t < steps; t++) {
      // After the first step (state warmed up unmasked, so masks have non-zero state to clear).
      if (t === 1) {
        specs.forEach((s, i) => {
          if (s.density === null) return;
          const m = keep(fromArray(seededValues(s.n, seed + 7 * i + 3, 0, 1).map((u) => (u < s.density! ? 1 : 0))));
          masks.push(m);
          opt.setMask(params[i], m);
        });
      }
      params.forEach((p, i) => {
        p.grad?.dispose();
        // Every third parameter sits out the second step (no gradient: not updated).
        p.grad = t === 1 && i % 3 === 2 ? null : keep(fromArray(seededValues(specs[i].n, seed + 31 * t + 1000 * i, -5, 5)));
      });
      opt.step();
    }
  });
  const out: number[][] = [];
  for (const p of params) {
    const { s1, s2 } = opt.stateOf(p);
    out.push(bits((await p.toArray()) as Float32Array), bits((await s1.toArray()) as Float32Array), bits((await s2.toArray()) as Float32Array));
  }
  opt.dispose();
  for (const t of [...params, ...masks]) t.dispose();
  return out;
}

describe('multi-tensor optimizer kernel', () => {
  it('is the static choice for a step\'s list; per-tensor plans are unchanged', () => {
    expect(plan('optim', { n: 1000, tensors: 20 }).variant).toBe('multi');
    expect(plan('optim', { n: 13 }).variant).toBe('scalar');
    expect(() => withKernels('optim:multi', () => plan('optim', { n: 12 }))).toThrow(/does not suit/);
  });

  it('gives the per-tensor kernels\' bits (weights and both moments) over random parameter lists, masks and optimizers', async () => {
    // Longer than one dispatch takes, so chunks and their boundaries are covered too.
    const limit = device().limits.maxStorageBuffersPerShaderStage ?? 8;
    await fc.assert(
      fc.asyncProperty(cfgArb, fc.array(paramArb, { minLength: 1, maxLength: limit + 6 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 1 << 20 }), async (cfg, specs, steps, seed) => {
        const multi = await runList('multi:r1', cfg, specs, steps, seed);
        expect(await runList('multi:r8', cfg, specs, steps, seed)).toEqual(multi);
        expect(await runList('vec4', cfg, specs, steps, seed)).toEqual(multi);
        expect(await runList('scalar', cfg, specs, steps, seed)).toEqual(multi);
      }),
      { numRuns: 12 },
    );
  });

  it('a parameter\'s own weight decay and lr factor act as an optimizer of those settings would', async () => {
    const w0 = seededValues(37, 5);
    const g = seededValues(37, 6);
    const run = async (cfg: OptimizerConfig, opts?: { weightDecay: number; lrScale: number }) => {
      const p = keep(fromArray(w0));
      const other = keep(fromArray([1, 2, 3]));
      for (const t of [p, other]) t.requiresGrad = true;
      const opt = new Optimizer([other, p], cfg);
      if (opts) opt.setParamOptions(p, opts);
      for (let t = 0; t < 3; t++) {
        for (const x of [p, other]) {
          x.grad?.dispose();
          x.grad = keep(fromArray(x === p ? g : [1, 1, 1]));
        }
        opt.step();
      }
      const out = bits((await p.toArray()) as Float32Array);
      opt.dispose();
      p.dispose();
      other.dispose();
      return out;
    };
    for (const kind of ['sgd', 'adam', 'adamw'] as const) {
      // lr 0.02 = 0.01 * 2 exactly, so the scaled rate is the same float.
      expect(await run({ kind, lr: 0.01, weightDecay: 0.5, momentum: 0.9 }, { weightDecay: 0.25, lrScale: 2 })).toEqual(await run({ kind, lr: 0.02, weightDecay: 0.25, momentum: 0.9 }));
    }
  });

  it('a step takes ceil(parameters / (binding limit - 3)) dispatches', () => {
    const limit = device().limits.maxStorageBuffersPerShaderStage ?? 8;
    const n = 2 * limit;
    const params = Array.from({ length: n }, (_, i) => {
      const p = keep(fromArray(seededValues(5 + i, i)));
      p.requiresGrad = true;
      p.grad = keep(fromArray(seededValues(5 + i, i + 9)));
      return p;
    });
    const opt = new Optimizer(params, { kind: 'adam', lr: 1e-3 });
    const mask = keep(fromArray(new Float32Array(5).fill(1)));
    opt.setMask(params[0], mask);
    queue.startCount();
    opt.step();
    const rows = queue.stopCount();
    expect(rows.reduce((a, r) => a + r.calls, 0)).toBe(Math.ceil(n / (limit - 3)));
    expect(rows.every((r) => r.phase === 'optimizer' && r.variant.includes('+multi:'))).toBe(true);
    opt.dispose();
    for (const p of params) p.dispose();
    mask.dispose();
  });

  it('parameters keep identity, shape and host reads/writes in the arena; a second optimizer over them takes them over', async () => {
    const a = keep(fromArray([1, 2, 3, 4, 5, 6], [2, 3]));
    const b = keep(fromArray([7], [1]));
    for (const p of [a, b]) p.requiresGrad = true;
    const opt1 = new Optimizer([a, b], { kind: 'sgd', lr: 0.5 }, ['l.weight', 'l.bias']);
    expect(a.shape).toEqual([2, 3]);
    expect(Array.from(await a.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    writeTensor(b, Float32Array.from([9]));
    expect(Array.from(await b.toArray())).toEqual([9]);
    expect(opt1.namedState().map(([k, t]) => [k, [...t.shape]])).toEqual([['l.weight.momentum_buffer', [2, 3]], ['l.bias.momentum_buffer', [1]]]);
    // A checkpoint's state written into the views reads back.
    writeTensor(opt1.stateOf(a).s1, Float32Array.from([1, 1, 1, 1, 1, 1]));
    expect(Array.from(await opt1.stateOf(a).s1.toArray())).toEqual([1, 1, 1, 1, 1, 1]);
    const opt2 = new Optimizer([a, b], { kind: 'sgd', lr: 1 });
    for (const p of [a, b]) p.grad = keep(fromArray(new Float32Array(p.size).fill(1), p.shape));
    opt2.step();
    expect(Array.from(await a.toArray())).toEqual([0, 1, 2, 3, 4, 5]);
    opt2.zeroGrad();
    opt2.dispose();
    // The first optimizer still updates them (they move back into its arena).
    for (const p of [a, b]) p.grad = keep(fromArray(new Float32Array(p.size).fill(2), p.shape));
    opt1.step();
    expect(Array.from(await a.toArray())).toEqual([-1, 0, 1, 2, 3, 4]);
    expect(Array.from(await b.toArray())).toEqual([7]);
    opt1.zeroGrad();
    opt1.dispose();
    a.dispose();
    b.dispose();
  });
});

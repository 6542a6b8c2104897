// Seeded random tensors on the GPU. (seed, stream) name a reproducible stream: parameters take
// distinct streams, so adding a layer never changes another layer's init.
import { dropoutKernel, randomKernel, RANDOM_UNIFORM, RANDOM_WG, type RandomDist } from '../../shaders/random.js';
import { gridFor, type Kernel } from '../../shaders/kernel.js';
import { queue } from '../queue.js';
import { cachedKernel, plan, registerCandidates, registerFamily } from '../plan.js';
import { empty, type Shape, Tensor } from '../tensor.js';
import { seedKey } from '../random-host.js';

export interface RandomOpts {
  seed: number;
  /** Independent stream id under the same seed. */
  stream?: number;
  /** Element offset into the stream (continue a stream across calls). */
  offset?: number;
}

function uniforms(n: number, o: RandomOpts, a: number, b: number): Uint32Array {
  const [k0, k1] = seedKey(o.seed);
  // Stream and offset are counters modulo 2^32, as the host twin (random-host.ts) takes them.
  return RANDOM_UNIFORM.pack({ n, k0, k1, stream: (o.stream ?? 0) >>> 0, offset: (o.offset ?? 0) >>> 0, a, b });
}

function run(dist: RandomDist, shape: Shape, o: RandomOpts, a: number, b: number): Tensor {
  const k = cachedKernel(`random|${dist}`, () => randomKernel(dist));
  const out = empty(shape);
  if (out.size === 0) return out;
  queue.dispatch(k, [{ buffer: out.buf }], uniforms(out.size, o, a, b), gridFor(out.size, RANDOM_WG));
  return out;
}

/** Uniform in [low, high). */
export function randomUniform(shape: Shape, o: RandomOpts, low = 0, high = 1): Tensor {
  return run('uniform', shape, o, low, high);
}

export function randomNormal(shape: Shape, o: RandomOpts, mean = 0, std = 1): Tensor {
  return run('normal', shape, o, mean, std);
}

function checkP(p: number): void {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout probability ${p} must be in [0, 1)`);
}

/** 1/(1-p) with probability 1-p, else 0: an inverted-dropout mask. */
export function dropoutMask(shape: Shape, p: number, o: RandomOpts): Tensor {
  checkP(p);
  return run('bernoulli', shape, o, 1 - p, 1 / (1 - p));
}

/**
 * Planner family 'fused.dropout': 'fused' draws the mask and multiplies in one kernel (dropoutKernel),
 * 'unfused' draws the mask, then a multiply map. The same bits; the static rule fuses everywhere.
 */
registerFamily<{ n: number }>({
  family: 'fused.dropout',
  about: 'inverted dropout: mask draw and multiply in one kernel, or a draw kernel and a multiply map',
  shapeClass: () => 'any',
  defaultRule: (_g, _dev, cands) => cands.find((c) => c.variant === 'fused') ?? cands[0],
});
registerCandidates<{ n: number }>('fused.dropout', [{ variant: 'fused' }, { variant: 'unfused' }]);

/** Whether dropout draws and applies its mask in one kernel (the planner's choice). */
export function fuseDropout(n: number): boolean {
  return plan<{ n: number }>('fused.dropout', { n }).variant === 'fused';
}

/** x * dropoutMask(x.shape, p, o) in one kernel: returns the product and the mask (for the backward). */
export function dropoutApply(x: Tensor, p: number, o: RandomOpts): { y: Tensor; mask: Tensor } {
  checkP(p);
  const y = empty(x.shape);
  const mask = empty(x.shape);
  if (x.size === 0) return { y, mask };
  const k = cachedKernel('random|dropout', dropoutKernel);
  queue.dispatch(k, [{ buffer: x.buf }, { buffer: y.buf }, { buffer: mask.buf }], uniforms(x.size, o, 1 - p, 1 / (1 - p)), gridFor(x.size, RANDOM_WG), {
    op: 'dropout',
    variant: 'fused',
    shape: `${x.size}`,
  });
  return { y, mask };
}

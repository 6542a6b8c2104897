// Seeded random tensors on the GPU. (seed, stream) name a reproducible stream: parameters take
// distinct streams, so adding a layer never changes another layer's init.
import { randomKernel, RANDOM_UNIFORM, RANDOM_WG, type RandomDist } from '../../shaders/random.js';
import { gridFor, type Kernel } from '../../shaders/kernel.js';
import { queue } from '../queue.js';
import { cachedKernel } from '../plan.js';
import { empty, type Shape, Tensor } from '../tensor.js';
import { seedKey } from '../random-host.js';

export interface RandomOpts {
  seed: number;
  /** Independent stream id under the same seed. */
  stream?: number;
  /** Element offset into the stream (continue a stream across calls). */
  offset?: number;
}

function run(dist: RandomDist, shape: Shape, o: RandomOpts, a: number, b: number): Tensor {
  const k = cachedKernel(`random|${dist}`, () => randomKernel(dist));
  const out = empty(shape);
  if (out.size === 0) return out;
  const [k0, k1] = seedKey(o.seed);
  // Stream and offset are counters modulo 2^32, as the host twin (random-host.ts) takes them.
  const p = RANDOM_UNIFORM.pack({ n: out.size, k0, k1, stream: (o.stream ?? 0) >>> 0, offset: (o.offset ?? 0) >>> 0, a, b });
  queue.dispatch(k, [{ buffer: out.buf }], p, gridFor(out.size, RANDOM_WG));
  return out;
}

/** Uniform in [low, high). */
export function randomUniform(shape: Shape, o: RandomOpts, low = 0, high = 1): Tensor {
  return run('uniform', shape, o, low, high);
}

export function randomNormal(shape: Shape, o: RandomOpts, mean = 0, std = 1): Tensor {
  return run('normal', shape, o, mean, std);
}

/** 1/(1-p) with probability 1-p, else 0: an inverted-dropout mask. */
export function dropoutMask(shape: Shape, p: number, o: RandomOpts): Tensor {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout probability ${p} must be in [0, 1)`);
  return run('bernoulli', shape, o, 1 - p, 1 / (1 - p));
}

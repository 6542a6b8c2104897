// Counter-based random numbers: Threefry-2x32 with 20 rounds (Salmon et al. 2011, as in JAX).
// Counter-based means element i of a draw depends only on (seed, stream, i): results do not depend on
// dispatch order, tiling or device, and the TypeScript twin (src/tensor/random-host.ts) reproduces
// them bit for bit on the host. Threefry needs only add/xor/rotate, which WGSL has (unlike mul-hi).
//
// Tiling: one thread per element, 256 per workgroup, grid1d. Fast for any size (compute-light).
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const RANDOM_WG = 256;
export type RandomDist = 'uniform' | 'normal' | 'bernoulli';

const THREEFRY_WGSL = `
fn rotl(x: u32, r: u32) -> u32 { return (x << r) | (x >> (32u - r)); }
fn threefry(k0: u32, k1: u32, c0: u32, c1: u32) -> vec2<u32> {
  let ks = array<u32, 3>(k0, k1, 0x1BD11BDAu ^ k0 ^ k1);
  let rot = array<u32, 8>(13u, 15u, 26u, 6u, 17u, 29u, 16u, 24u);
  var x0 = c0 + ks[0];
  var x1 = c1 + ks[1];
  for (var i = 0u; i < 20u; i++) {
    x0 += x1;
    x1 = rotl(x1, rot[i % 8u]);
    x1 ^= x0;
    if (i % 4u == 3u) {
      let s = (i + 1u) / 4u;
      x0 += ks[s % 3u];
      x1 += ks[(s + 1u) % 3u] + s;
    }
  }
  return vec2<u32>(x0, x1);
}
`;

/** The random kernels' uniforms: the Threefry key (k0, k1), stream and counter offset, range a..b. */
export const RANDOM_UNIFORM = uniformStruct([
  ['n', 'u32'], ['k0', 'u32'], ['k1', 'u32'], ['stream', 'u32'], ['offset', 'u32'], ['a', 'f32'], ['b', 'f32'],
] as const);

/** Bernoulli keep-mask scaled like inverted dropout: value b with probability a, else 0. */
const BERNOULLI = 'select(0.0, p.b, f32(r.x >> 8u) * 5.9604644775390625e-8 < p.a)';

/** A thread-per-element kernel with the Threefry draw `r` of element i (after `storage`, the uniform). */
function threefryKernel(name: string, storage: readonly string[], body: string): string {
  return `// ${name}
${RANDOM_UNIFORM.wgsl}
${storage.map((decl, b) => `@group(0) @binding(${b}) var<storage, ${decl};`).join('\n')}
@group(0) @binding(${storage.length}) var<uniform> p: P;
${THREEFRY_WGSL}
@compute @workgroup_size(${RANDOM_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(RANDOM_WG)};
  if (i >= p.n) { return; }
  let r = threefry(p.k0, p.k1, i + p.offset, p.stream);
  ${body}
}
`;
}

export function randomKernel(dist: RandomDist): Kernel {
  const body =
    dist === 'uniform'
      ? 'out[i] = p.a + (p.b - p.a) * f32(r.x >> 8u) * 5.9604644775390625e-8;'
      : dist === 'normal'
        ? `let u1 = f32((r.x >> 8u) + 1u) * 5.9604644775390625e-8;
  let u2 = f32(r.y >> 8u) * 5.9604644775390625e-8;
  out[i] = p.a + p.b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);`
        : `out[i] = ${BERNOULLI};`;
  return { name: `random_${dist}`, code: threefryKernel(`random_${dist}`, ['read_write> out: array<f32>'], body), bindings: ['write', 'uniform'] };
}

/**
 * Inverted dropout in one pass: the bernoulli mask of randomKernel('bernoulli') (the same draw, the
 * same value b with probability a, else 0), stored for the backward, and y = x * mask, the product the
 * separate multiply would compute. Saves the multiply's dispatch and its re-read of the mask.
 * Tiling: randomKernel's, one thread per element.
 */
export function dropoutKernel(): Kernel {
  const body = `let m = ${BERNOULLI};
  mask[i] = m;
  y[i] = x[i] * m;`;
  const storage = ['read> x: array<f32>', 'read_write> y: array<f32>', 'read_write> mask: array<f32>'];
  return { name: 'random_dropout', code: threefryKernel('random_dropout', storage, body), bindings: ['read', 'write', 'write', 'uniform'] };
}

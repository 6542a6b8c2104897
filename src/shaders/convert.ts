// Input conversion: a batch uploaded as bytes (CHW uint8 per image, 4 per u32 word) becomes the
// model's float NCHW input on the device: per-channel table lookup (byte -> normalised float, the
// table made on the host exactly as the float path computes it, so the result is bit-identical by
// construction and no device division or rounding mode is involved) and a per-image horizontal flip.
//
// Tiling: one thread per output float, 256 per workgroup, grid1d; each thread reads one word of
// bytes (neighbouring threads share words, so loads coalesce) and writes one float. Memory-bound at
// any size; the byte input is a quarter of the output's traffic.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const CONVERT_WG = 256;

export const CONVERT_UNIFORM = uniformStruct([
  ['n', 'u32'], ['size', 'u32'], ['plane', 'u32'], ['per', 'u32'],
] as const);

/** Bindings: bytes (u32 words), flips (u32 per image), table (3 x 256 f32), out (f32), uniforms. */
export function convertBytesKernel(): Kernel {
  const code = `// convert_bytes
${CONVERT_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> flips: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${CONVERT_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(CONVERT_WG)};
  if (i >= p.n) { return; }
  let img = i / p.per;
  let r = i - img * p.per;
  let c = r / p.plane;
  let x = r % p.size;
  var s = i;
  if (flips[img] != 0u) { s = i - x + (p.size - 1u - x); }
  let byte = (src[s >> 2u] >> ((s & 3u) * 8u)) & 0xffu;
  out[i] = table[c * 256u + byte];
}
`;
  return { name: 'convert_bytes', code, bindings: ['read', 'read', 'read', 'write', 'uniform'] };
}

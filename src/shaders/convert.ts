// Input conversion: a batch uploaded as bytes (CHW uint8 per image, 4 per u32 word) becomes the
// model's float NCHW input on the device: per-channel table lookup (byte -> normalised float, the
// table made on the host exactly as the float path computes it, so the result is bit-identical by
// construction and no device division or rounding mode is involved) and a per-image horizontal flip.
//
// Tiling (planner family 'convert'), 256 threads per workgroup, grid1d, memory-bound at any size:
//  - 'element': one thread per output float; reads the word holding its byte (neighbours share
//    words, so loads coalesce). Any image side.
//  - 'word': one thread per word of input = four floats of one row, written as a vec4; a flipped
//    row reads the mirrored word and reverses its bytes. Needs side % 4 == 0 (rows then start on
//    word boundaries); a quarter of the threads and index divisions, which is what lavapipe pays for.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const CONVERT_WG = 256;

export const CONVERT_UNIFORM = uniformStruct([
  ['n', 'u32'], ['size', 'u32'], ['plane', 'u32'], ['per', 'u32'],
] as const);

/** Both variants' bindings (bytes as u32 words, a flip flag per image, the table, out) and entry point. */
function header(outType: string): string {
  return `${CONVERT_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> flips: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<${outType}>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${CONVERT_WG})
fn main(${GRID_BUILTINS_WGSL}) {`;
}

/** 'word' variant; the uniform's n counts words, per and plane are in words too. */
export function convertWordsKernel(): Kernel {
  const code = `// convert_bytes_word
${header("vec4<f32>")}
  let q = ${linearIndexWgsl(CONVERT_WG)};
  if (q >= p.n) { return; }
  let img = q / p.per;
  let r = q - img * p.per;
  let c = r / p.plane;
  let rowWords = p.size / 4u;
  let xw = r % rowWords;
  let t = c * 256u;
  if (flips[img] != 0u) {
    let w = src[q - xw + (rowWords - 1u - xw)];
    out[q] = vec4<f32>(table[t + (w >> 24u)], table[t + ((w >> 16u) & 0xffu)], table[t + ((w >> 8u) & 0xffu)], table[t + (w & 0xffu)]);
  } else {
    let w = src[q];
    out[q] = vec4<f32>(table[t + (w & 0xffu)], table[t + ((w >> 8u) & 0xffu)], table[t + ((w >> 16u) & 0xffu)], table[t + (w >> 24u)]);
  }
}
`;
  return { name: 'convert_bytes_word', code, bindings: ['read', 'read', 'read', 'write', 'uniform'] };
}

/** 'element' variant. Bindings: bytes (u32 words), flips (u32 per image), table (3 x 256 f32), out (f32), uniforms. */
export function convertBytesKernel(): Kernel {
  const code = `// convert_bytes
${header("f32")}
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

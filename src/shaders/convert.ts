// Input conversion: a batch uploaded as bytes (CHW uint8 per image, 4 per u32 word) becomes the
// model's float NCHW input on the device: per-channel table lookup (byte -> normalised float, the
// table made on the host exactly as the float path computes it, so the result is bit-identical by
// construction and no device division or rounding mode is involved) and a per-image horizontal flip.
//
// Tiling (planner family 'convert'), 256 threads per workgroup, grid1d, memory-bound at any size.
// The image side is baked into the kernel as constants (one kernel per training size): the index
// decode is then divisions by constants, which compile to multiplies; divisions by uniforms are
// scalarised on lavapipe's SIMD lanes and cost more than the memory traffic.
//  - 'element': one thread per output float; reads the word holding its byte (neighbours share
//    words, so loads coalesce). Any image side.
//  - 'word': one thread per word of input = four floats of one row, written as a vec4; a flipped
//    row reads the mirrored word and reverses its bytes. Needs side % 4 == 0 (rows then start on
//    word boundaries); a quarter of the threads and index decodes.
//  - 'words' (tile k): one thread per k consecutive words of a row (4k floats, k vec4 stores, the
//    loop unrolled), for side % (4k) == 0. On lavapipe an invocation costs more than its four
//    lookups (measured: k = 4 gives 1.4-3x the images/s of 'word' at 64 and 256 px, k = 8 and 16
//    less than k = 4); on GPUs fewer, fatter threads change little for a pass this memory-bound.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const CONVERT_WG = 256;

/** n: output floats ('element') or input words ('word', 'words'): the thread count times the floats or words per thread. */
export const CONVERT_UNIFORM = uniformStruct([['n', 'u32']] as const);

/** Both variants' bindings (bytes as u32 words, a flip flag per image, the table, out), shape constants and entry point. */
function header(outType: string, size: number, perThread: number): string {
  return `${CONVERT_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> flips: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<${outType}>;
@group(0) @binding(4) var<uniform> p: P;
const SIZE = ${size}u;
const ROW = ${size / perThread}u;
const PLANE = ${(size * size) / perThread}u;
const PER = ${(3 * size * size) / perThread}u;
@compute @workgroup_size(${CONVERT_WG})
fn main(${GRID_BUILTINS_WGSL}) {`;
}

/** 'word' variant for images of side `size` (a multiple of 4). */
export function convertWordsKernel(size: number): Kernel {
  if (size % 4 !== 0) throw new Error(`convert 'word' needs a side divisible by 4, got ${size}`);
  const code = `// convert_bytes_word ${size}
${header('vec4<f32>', size, 4)}
  let q = ${linearIndexWgsl(CONVERT_WG)};
  if (q >= p.n) { return; }
  let img = q / PER;
  let c = (q % PER) / PLANE;
  let xw = q % ROW;
  let t = c * 256u;
  if (flips[img] != 0u) {
    let w = src[q - xw + (ROW - 1u - xw)];
    out[q] = vec4<f32>(table[t + (w >> 24u)], table[t + ((w >> 16u) & 0xffu)], table[t + ((w >> 8u) & 0xffu)], table[t + (w & 0xffu)]);
  } else {
    let w = src[q];
    out[q] = vec4<f32>(table[t + (w & 0xffu)], table[t + ((w >> 8u) & 0xffu)], table[t + ((w >> 16u) & 0xffu)], table[t + (w >> 24u)]);
  }
}
`;
  return { name: 'convert_bytes_word', code, bindings: ['read', 'read', 'read', 'write', 'uniform'] };
}

/** The four table lookups of word `w` (bytes low to high, or high to low for a mirrored row) as a vec4. */
function lookups(w: string, mirrored: boolean): string {
  const bytes = [`${w} & 0xffu`, `(${w} >> 8u) & 0xffu`, `(${w} >> 16u) & 0xffu`, `${w} >> 24u`];
  if (mirrored) bytes.reverse();
  return `vec4<f32>(${bytes.map((b) => `table[t + (${b})]`).join(', ')})`;
}

/**
 * 'words' variant: k words of a row per thread, for images of side `size` (a multiple of 4k). A
 * mirrored row's k words are the mirror of the k words ending at the mirrored column.
 */
export function convertWordRunsKernel(size: number, k: number): Kernel {
  if (!Number.isInteger(k) || k < 1 || size % (4 * k) !== 0) throw new Error(`convert 'words' needs a side divisible by ${4 * k}, got ${size}`);
  let flipped = '';
  let straight = '';
  for (let j = 0; j < k; j++) {
    flipped += `    let a${j} = src[m + ${k - 1 - j}u];\n    out[q + ${j}u] = ${lookups(`a${j}`, true)};\n`;
    straight += `    let b${j} = src[q + ${j}u];\n    out[q + ${j}u] = ${lookups(`b${j}`, false)};\n`;
  }
  const code = `// convert_bytes_words ${size} ${k}
${header('vec4<f32>', size, 4)}
  let q = ${linearIndexWgsl(CONVERT_WG)} * ${k}u;
  if (q >= p.n) { return; }
  let img = q / PER;
  let t = ((q % PER) / PLANE) * 256u;
  let xw = q % ROW;
  if (flips[img] != 0u) {
    let m = q - xw + (ROW - ${k}u - xw);
${flipped}  } else {
${straight}  }
}
`;
  return { name: 'convert_bytes_words', code, bindings: ['read', 'read', 'read', 'write', 'uniform'] };
}

/** 'element' variant for images of side `size`. */
export function convertBytesKernel(size: number): Kernel {
  const code = `// convert_bytes ${size}
${header('f32', size, 1)}
  let i = ${linearIndexWgsl(CONVERT_WG)};
  if (i >= p.n) { return; }
  let img = i / PER;
  let c = (i % PER) / PLANE;
  let x = i % SIZE;
  var s = i;
  if (flips[img] != 0u) { s = i - x + (SIZE - 1u - x); }
  let byte = (src[s >> 2u] >> ((s & 3u) * 8u)) & 0xffu;
  out[i] = table[c * 256u + byte];
}
`;
  return { name: 'convert_bytes', code, bindings: ['read', 'read', 'read', 'write', 'uniform'] };
}

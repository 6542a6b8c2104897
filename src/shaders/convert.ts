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
//  - 'unorm' (tile g): no table. For the plain byte / 255 conversion (no normalisation) only, and only
//    on an adapter where the exhaustive self-check passed (tensor/ops/convert.ts: every byte value in
//    every channel, both flip states, compared bit for bit with the table), since WGSL lets
//    unpack4x8unorm round within a few ulps. One thread per g groups of four words (16 bytes) of a
//    row: one vec4<u32> load and four unpack4x8unorm + vec4 stores per group, for side % (16g) == 0.
//    The table's lookups are per-lane scalar loads on lavapipe (a gather with a bounds check each,
//    16 per word); the unpack is four vector ALU ops. Measured on lavapipe (2 cores, batch 32, one
//    run): g = 2 gives 2-4x the images/s of 'words:4' at 256 px and ~2x at 64 px; g = 1 and 4 a
//    little less than g = 2.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const CONVERT_WG = 256;

/** n: output floats ('element'), input words ('word', 'words') or groups of four words ('unorm'): the thread count times the items per thread. */
export const CONVERT_UNIFORM = uniformStruct([['n', 'u32']] as const);

/**
 * Every variant's bindings (bytes as u32 words, or groups of four; a flip flag per image; the table;
 * out), shape constants in items of `perThread` bytes or floats, and entry point.
 */
function header(outType: string, size: number, perThread: number, srcType = 'u32'): string {
  return `${CONVERT_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> src: array<${srcType}>;
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
 * A kernel doing k items (words, or groups of four words) of `itemBytes` bytes of a row per thread,
 * from item q on: straight, items q..q+k-1; mirrored, item j is the mirror of item k-1-j of the k
 * items from m (the mirrored position). `emit` converts and stores item j, loaded into `v`; `setup`
 * adds per-thread lines after the image index.
 */
function runsKernel(name: string, size: number, k: number, itemBytes: number, srcType: string, setup: string, emit: (v: string, j: number, mirrored: boolean) => string): Kernel {
  let flipped = '';
  let straight = '';
  for (let j = 0; j < k; j++) {
    flipped += `    let a${j} = src[m + ${k - 1 - j}u];\n${emit(`a${j}`, j, true)}`;
    straight += `    let b${j} = src[q + ${j}u];\n${emit(`b${j}`, j, false)}`;
  }
  const code = `// ${name} ${size} ${k}
${header('vec4<f32>', size, itemBytes, srcType)}
  let q = ${linearIndexWgsl(CONVERT_WG)} * ${k}u;
  if (q >= p.n) { return; }
  let img = q / PER;
${setup}  let xw = q % ROW;
  if (flips[img] != 0u) {
    let m = q - xw + (ROW - ${k}u - xw);
${flipped}  } else {
${straight}  }
}
`;
  return { name, code, bindings: ['read', 'read', 'read', 'write', 'uniform'] };
}

/**
 * 'words' variant: k words of a row per thread, for images of side `size` (a multiple of 4k). A
 * mirrored row's k words are the mirror of the k words ending at the mirrored column.
 */
export function convertWordRunsKernel(size: number, k: number): Kernel {
  if (!Number.isInteger(k) || k < 1 || size % (4 * k) !== 0) throw new Error(`convert 'words' needs a side divisible by ${4 * k}, got ${size}`);
  // Each thread's table row: its channel's 256 floats.
  return runsKernel('convert_bytes_words', size, k, 4, 'u32', `  let t = ((q % PER) / PLANE) * 256u;\n`, (v, j, mirrored) => `    out[q + ${j}u] = ${lookups(v, mirrored)};\n`);
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

/** One group's four words converted (unpack4x8unorm: byte / 255), mirrored: words and bytes reversed. */
function unormGroup(v: string, dst: string, mirrored: boolean): string {
  const lanes = mirrored ? ['w', 'z', 'y', 'x'] : ['x', 'y', 'z', 'w'];
  return lanes.map((l, e) => `    out[${dst} + ${e}u] = unpack4x8unorm(${v}.${l})${mirrored ? '.wzyx' : ''};\n`).join('');
}

/**
 * 'unorm' variant: g groups of four words (16 bytes) of a row per thread, for images of side `size`
 * (a multiple of 16g); converts byte / 255 with no table (the `table` binding stays, unread, so every
 * variant binds alike). Correct only where the self-check passed (see the header).
 */
export function convertUnormKernel(size: number, g: number): Kernel {
  if (!Number.isInteger(g) || g < 1 || size % (16 * g) !== 0) throw new Error(`convert 'unorm' needs a side divisible by ${16 * g}, got ${size}`);
  return runsKernel('convert_bytes_unorm', size, g, 16, 'vec4<u32>', '', (v, j, mirrored) => unormGroup(v, `4u * (q + ${j}u)`, mirrored));
}

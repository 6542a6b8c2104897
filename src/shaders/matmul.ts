// Matmul family: C = alpha * op(A) @ op(B) [+ bias along N] [+ beta * C0], 2-D or batched, f32.
//
// op(X) is X or X^T; transposes are handled in the load phase (no transpose pass). The host sets
// "vec" flags when a dim is a multiple of 4 so that loads/stores along it may use vec4s.
// Uniform layout (P): M, N, K, tilesN, tilesM, strideA, strideB, strideC (batch strides in elements;
// 0 broadcasts an operand over the batch), alpha, beta, batchBase (first batch of this dispatch),
// flags (bit 0: add bias; bits 1-2: 0 no C, 1 add beta * C0, 2 add beta * out, i.e. accumulate in
// place). Bindings are always A, B, bias, C0, out, P; unused ones get a dummy buffer, so the
// epilogue options cost no extra kernel variants.
// Grid: x/y = tiles of one batch matrix (linear index, folded like grid1d), z = batches.
//
// Two variants:
//
// 'shared' (real GPUs). A workgroup computes a BM x BN tile of C; each of its 256 threads a TM x TN
//   register block. Per k-step of BK, A (BM x BK) and B (BK x BN) tiles go through workgroup memory,
//   both stored k-major ([k][m], [k][n]) so the inner loop reads vec4s of 4 consecutive rows of A and
//   4 consecutive columns of B: per k, TM/4 + TN/4 vec4 reads feed TM * TN FMAs (8x8: 4 reads, 64
//   FMAs). A thread's block is split into 4x4 sub-blocks spaced BM/(TM/4) rows and BN/(TN/4) columns
//   apart, so a warp's vec4 reads are consecutive (conflict-free) and its vec4 output stores
//   coalesced. Loads are coalesced whatever the transposes (see sharedLoad) and always store whole
//   vec4s. The next k-tile is prefetched from global memory into registers while the current one is
//   multiplied, then stored to the other half of a double buffer: one barrier per k-tile. Workgroups
//   walk tiles in groups of 8 tile-rows (L2 reuse of B panels).
//   Configs (host picks by size): 'large' 128x128x8, 8x8 per thread; 'small' 64x64x16, 4x4 per thread
//   (when there are too few 128x128 tiles to fill a GPU). Both use exactly 16 KiB of workgroup
//   memory, the WebGPU default limit.
//   Why this should do well on an H100 (untested: no GPU in this session): 128x128 tiles with 8x8
//   blocks and BK = 8 are the classic CUDA SGEMM design that reaches 80-90% of cuBLAS; the global
//   loads are one vec4 (or 4 coalesced scalars) per operand per thread per 512 FMAs, so Dawn's
//   robustness clamps on them are noise. What to tune there, in order: the large/small threshold in
//   ops/matmul.ts (tiles >= 256), BK 16 (32 KiB: allowed by the raised limit on H100), a 128x64 tile
//   for mid sizes, the tile-group size (8), and, beyond fp32 SIMT, subgroup-matrix / f16 paths (need
//   Dawn toggles). Tint clamps dynamic workgroup-array indices too (one min per shared read, ~5% issue
//   slots); Dawn's disable_robustness toggle would remove both kinds of clamp.
//
// 'register' (lavapipe / CPUs). No workgroup memory and no barriers (a barrier on lavapipe is a
//   coroutine switch of the whole workgroup and costs more than the FMAs between them). Each thread
//   computes TM x TN outputs reading A and B straight from the storage buffers (the CPU caches do the
//   tiling), k unrolled by 4 so that A rows (non-transposed) and B^T rows come in as vec4s. Rows and
//   columns past the matrix edge are clamped to the last row/column (their results are discarded), so
//   the inner loop has no bounds checks; k % 4 leftovers run in a scalar tail loop. On lavapipe the
//   storage loads dominate (the same kernel with loads stubbed out runs ~15x faster); 4x4, 4x8, 8x4
//   and 8x8 blocks and 32-256-thread workgroups all measured within noise (~4.5-5.5 GFLOP per
//   CPU-second), so the small 16x64 tile is kept: more workgroups for small matrices.
import { uniformStruct } from './uniform.js';
import { GRID_BUILTINS_WGSL, type Kernel } from './kernel.js';

export type MatmulVariant = 'shared' | 'register';

export interface TileConfig {
  readonly name: string;
  readonly BM: number;
  readonly BN: number;
  readonly BK: number;
  readonly TM: number;
  readonly TN: number;
}

export const SHARED_LARGE: TileConfig = { name: 'large', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 };
export const SHARED_SMALL: TileConfig = { name: 'small', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 };
/**
 * Configs meant for large GPUs (timed by the tuner, never picked by the static rule): a 128x64 tile for
 * mid-size products (twice the workgroups of 128x128), 256x64 with 16x4 per thread (tall, 20 KiB of
 * workgroup memory) and 128x128 with BK = 16 (32 KiB: fewer barriers per FMA where the limit allows).
 */
export const SHARED_128X64: TileConfig = { name: '128x64', BM: 128, BN: 64, BK: 8, TM: 8, TN: 4 };
export const SHARED_256X64: TileConfig = { name: '256x64', BM: 256, BN: 64, BK: 8, TM: 16, TN: 4 };
export const SHARED_128X128_K16: TileConfig = { name: '128x128k16', BM: 128, BN: 128, BK: 16, TM: 8, TN: 8 };
/** Workgroup memory of a shared-variant tile (double-buffered A and B tiles). */
export function sharedTileBytes(t: TileConfig): number {
  return 2 * t.BK * (t.BM + t.BN) * 4;
}
/** Register variant: 64 threads (16 x 4), 4x4 per thread -> 16 x 64 tile. See bench/matmul.ts. */
export const REGISTER_TILE: TileConfig = { name: 'reg', BM: 16, BN: 64, BK: 4, TM: 4, TN: 4 };

/** How the epilogue adds beta * C0: 0 none, 1 from the C0 binding, 2 from the output itself. */
export const C_NONE = 0;
export const C_INPUT = 1;
export const C_INPLACE = 2;
/** p.flags bit 0: add bias; bits 1-2: C mode; higher bits 0. Runtime flags: no extra kernel variants. */
export const FLAG_BIAS = 1;

export interface MatmulSpec {
  variant: MatmulVariant;
  tile: TileConfig;
  transA: boolean;
  transB: boolean;
  /** vec4 access allowed: A's contiguous dim (K, or M when transA) % 4 == 0; B's (N, or K when
   * transB) % 4 == 0; C's (N) % 4 == 0. */
  vecA: boolean;
  vecB: boolean;
  vecC: boolean;
  /** Epilogue code shape (see epilogueCode): 'loop' on software devices, 'unrolled' on GPUs. */
  epilogue: EpilogueForm;
}

export type EpilogueForm = 'loop' | 'unrolled';

/** The matmul kernels' uniforms (strides 0 broadcast an operand over the batch; flags: bias, C mode). */
export const MATMUL_UNIFORM = uniformStruct([
  ['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['tilesN', 'u32'],
  ['tilesM', 'u32'], ['strideA', 'u32'], ['strideB', 'u32'], ['strideC', 'u32'],
  ['alpha', 'f32'], ['beta', 'f32'], ['batchBase', 'u32'], ['flags', 'u32'],
] as const);
const P_STRUCT = MATMUL_UNIFORM.wgsl;

export function matmulName(s: MatmulSpec): string {
  return `matmul_${s.variant}_${s.tile.name}_${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}_${s.vecA ? 'v' : 's'}${s.vecB ? 'v' : 's'}${s.vecC ? 'v' : 's'}${s.epilogue === 'unrolled' ? '_u' : ''}`;
}

/** Bindings, always in this order: A, B, bias, C0, out, params (unused ones get a dummy buffer). */
export const MATMUL_BINDINGS: Kernel['bindings'] = ['read', 'read', 'read', 'read', 'write', 'uniform'];

function declarations(s: MatmulSpec): string {
  const ty = (v: boolean) => (v ? 'array<vec4<f32>>' : 'array<f32>');
  // Scalar accessors that work whichever way an operand is declared.
  const acc = (nm: string, v: boolean) =>
    v ? `fn ld${nm}(i: u32) -> f32 { return ${nm}[i >> 2u][i & 3u]; }` : `fn ld${nm}(i: u32) -> f32 { return ${nm}[i]; }`;
  return [
    `@group(0) @binding(0) var<storage, read> A: ${ty(s.vecA)};`,
    `@group(0) @binding(1) var<storage, read> B: ${ty(s.vecB)};`,
    `@group(0) @binding(2) var<storage, read> bias: ${ty(s.vecC)};`,
    `@group(0) @binding(3) var<storage, read> C0: ${ty(s.vecC)};`,
    `@group(0) @binding(4) var<storage, read_write> out: ${ty(s.vecC)};`,
    `@group(0) @binding(5) var<uniform> p: P;`,
    acc('A', s.vecA),
    acc('B', s.vecB),
    epilogueFn(s),
  ].join('\n');
}

/**
 * store4(cBase, row, col, v): the epilogue of one 4-wide output group (columns col..col+3):
 * alpha * v, + bias (flag bit 0), + beta * C0 or + beta * out (flag bits 1-2). A function rather than
 * inlined code: 16-64 inlined bounds-checked copies dominated compile time on lavapipe (10x) and
 * bought nothing at run time; the flags are uniform, so their branches do not diverge.
 */
function epilogueFn(s: MatmulSpec): string {
  if (s.vecC) {
    return `fn store4(cBase: u32, row: u32, col: u32, v: vec4<f32>) {
  if (row >= p.M || col >= p.N) { return; }
  let ci = (cBase + row * p.N + col) >> 2u;
  var r = v * p.alpha;
  if ((p.flags & 1u) != 0u) { r += bias[col >> 2u]; }
  let cm = (p.flags >> 1u) & 3u;
  if (cm == 1u) { r += p.beta * C0[ci]; } else if (cm == 2u) { r += p.beta * out[ci]; }
  out[ci] = r;
}`;
  }
  return `fn store4(cBase: u32, row: u32, col: u32, v: vec4<f32>) {
  if (row >= p.M || col >= p.N) { return; }
  let cm = (p.flags >> 1u) & 3u;
  // Runtime trip count (columns left in the row), so the loop is not unrolled into 4 copies.
  let nj = min(4u, p.N - col);
  for (var j = 0u; j < nj; j++) {
    let ci = cBase + row * p.N + col + j;
    var r = v[j] * p.alpha;
    if ((p.flags & 1u) != 0u) { r += bias[col + j]; }
    if (cm == 1u) { r += p.beta * C0[ci]; } else if (cm == 2u) { r += p.beta * out[ci]; }
    out[ci] = r;
  }
}`;
}

/**
 * The epilogue: one store4 per 4-wide accumulator group. 'unrolled' emits one call per group
 * (straight-line code, what a GPU wants: no branching per group, which would matter for small K).
 * 'loop' emits a single call site in a loop and a switch on the (uniform) loop index picks the
 * accumulator: on lavapipe every inlined store4 is a masked scatter and 16-64 of them made the
 * compile 3-7x slower. `row(q)` / `col(q)` give the group's coordinates for a WGSL u32 expression q.
 */
function epilogueCode(form: EpilogueForm, accs: string[], row: (q: string) => string, col: (q: string) => string): string {
  if (form === 'unrolled') return accs.map((a, q) => `  store4(cBase, ${row(`${q}u`)}, ${col(`${q}u`)}, ${a});`).join('\n');
  const cases = accs.map((a, q) => (q === accs.length - 1 ? `      default: { v = ${a}; }` : `      case ${q}u: { v = ${a}; }`));
  // The trip count reads p.flags (whose high bits are always 0) so LLVM cannot see a constant and
  // unroll the loop back into one inlined store4 per group.
  return `  for (var q = 0u; q < ${accs.length}u + (p.flags >> 8u); q++) {
    var v: vec4<f32>;
    switch q {
${cases.join('\n')}
    }
    store4(cBase, ${row('q')}, ${col('q')}, v);
  }`;
}

// ------------------------------------------------------------------------------------------------
// 'shared' variant

/**
 * Load-phase code of one operand tile into registers and from registers into workgroup memory.
 * `X` is 'A' or 'B'. Along the tile's "outer" dim (m for A, n for B) the tile has `BO` entries.
 * Workgroup memory holds the tile k-major: `Xs[k][o / 4]` as vec4s of 4 consecutive o. Every store
 * writes a whole vec4: WGSL counts a write to one vector component as an access to the whole
 * vector, so threads filling different components of one vec4 would race (gpuweb#2112; Metal and
 * D3D really do read-modify-write).
 *  - contig-o operand (A transposed, B not): unit = 4 consecutive o of one k-row, one vec4 (or 4
 *    scalar) load; unit -> (k = u / (BO/4), q = u % (BO/4)) so a warp reads 512 contiguous bytes and
 *    stores 32 consecutive vec4s.
 *  - contig-k operand (A not transposed, B transposed): unit = 4 rows o..o+3 at one k, 4 scalar
 *    loads; unit -> (k = u % BK, q = u / BK) so 8 neighbouring threads read 32 contiguous bytes of a
 *    row. Those 8 threads store to 8 different k-rows of the same column group, which would be an
 *    8-way bank conflict; the vec4 slot is XOR-swizzled by (k & 7) (`swz`), and readers undo it.
 */
function sharedLoad(
  X: 'A' | 'B',
  contigK: boolean,
  vec: boolean,
  BO: number,
  BK: number,
  threads: number,
): { load: (reg: string, k0: string) => string; store: (reg: string, buf: string) => string; count: number; swz: boolean } {
  const units = (BO * BK) / 4;
  const count = Math.ceil(units / threads);
  const ext = X === 'A' ? 'p.M' : 'p.N';
  const o0 = X === 'A' ? 'm0' : 'n0';
  const base = X === 'A' ? 'aBase' : 'bBase';
  const sh = X === 'A' ? 'As' : 'Bs';
  const rowsPer = BO / 4; // vec4 per k-row in workgroup memory
  if (contigK && rowsPer % 8 !== 0) throw new Error(`matmul: swizzle needs BO/4 % 8 == 0 (BO = ${BO})`);
  const guard = (l: number) => ((l + 1) * threads > units ? `u${X}${l} < ${units}u` : '');
  const loadOne = (l: number, reg: string, k0: string): string => {
    const u = `(lid + ${l * threads}u)`;
    let body: string;
    if (contigK) {
      body = `    let o = ${o0} + (${u} / ${BK}u) * 4u;
    let k = ${k0} + ${u} % ${BK}u;
    let gi = ${base} + o * p.K + k;
    if (k < p.K) {
${[0, 1, 2, 3].map((j) => `      if (o + ${j}u < ${ext}) { ${reg}[${j}] = ld${X}(gi + ${j}u * p.K); }`).join('\n')}
    }`;
    } else {
      body = `    let o = ${o0} + (${u} % ${rowsPer}u) * 4u;
    let k = ${k0} + ${u} / ${rowsPer}u;
    let gi = ${base} + k * ${ext} + o;
    if (k < p.K) {
${
  vec
    ? `      if (o < ${ext}) { ${reg} = ${X}[gi >> 2u]; }`
    : [0, 1, 2, 3].map((j) => `      if (o + ${j}u < ${ext}) { ${reg}[${j}] = ld${X}(gi + ${j}u); }`).join('\n')
}
    }`;
    }
    return `  ${reg} = vec4<f32>(0.0);
  {
${body}
  }`;
  };
  const storeOne = (l: number, reg: string, buf: string): string => {
    const u = `(lid + ${l * threads}u)`;
    if (contigK) {
      return `  {
    let kk = ${u} % ${BK}u;
    ${sh}[${buf} + kk * ${rowsPer}u + ((${u} / ${BK}u) ^ (kk & 7u))] = ${reg};
  }`;
    }
    return `  ${sh}[${buf} + ${u}] = ${reg};`;
  };
  const wrap = (l: number, code: string) => {
    const g = guard(l);
    return g ? `  {\n  let u${X}${l} = lid + ${l * threads}u;\n  if (${g}) {\n${code}\n  }\n  }` : code;
  };
  return {
    count,
    swz: contigK,
    load: (reg, k0) => Array.from({ length: count }, (_, l) => wrap(l, loadOne(l, `${reg}${l}`, k0))).join('\n'),
    store: (reg, buf) => Array.from({ length: count }, (_, l) => wrap(l, storeOne(l, `${reg}${l}`, buf))).join('\n'),
  };
}

function sharedKernel(s: MatmulSpec): Kernel {
  const { BM, BN, BK, TM, TN } = s.tile;
  const TX = BN / TN;
  const TY = BM / TM;
  const threads = TX * TY;
  const GM = TM / 4; // 4-row sub-blocks per thread
  const GN = TN / 4; // 4-column sub-blocks per thread
  const name = matmulName(s);
  const decl = declarations(s);
  const la = sharedLoad('A', !s.transA, s.vecA, BM, BK, threads);
  const lb = sharedLoad('B', s.transB, s.vecB, BN, BK, threads);
  const aSize = (BK * BM) / 4; // vec4 per buffer half
  const bSize = (BK * BN) / 4;

  const accDecl: string[] = [];
  for (let g = 0; g < GM; g++)
    for (let i = 0; i < 4; i++) for (let h = 0; h < GN; h++) accDecl.push(`  var acc_${g}_${i}_${h} = vec4<f32>(0.0);`);
  const regDecl: string[] = [];
  for (let l = 0; l < la.count; l++) regDecl.push(`  var ra${l}: vec4<f32>;`);
  for (let l = 0; l < lb.count; l++) regDecl.push(`  var rb${l}: vec4<f32>;`);

  const compute: string[] = [];
  for (let kk = 0; kk < BK; kk++) {
    compute.push(`    // k = ${kk}`);
    // Column group g*TY + ty of k-row kk, un-swizzled for contig-k operands (see sharedLoad).
    const sw = (e: string, on: boolean) => (on ? `((${e}) ^ ${kk & 7}u)` : e);
    for (let g = 0; g < GM; g++) compute.push(`    let a${kk}_${g} = As[aOff + ${kk * (BM / 4)}u + ${sw(`${g * TY}u + ty`, la.swz)}];`);
    for (let h = 0; h < GN; h++) compute.push(`    let b${kk}_${h} = Bs[bOff + ${kk * (BN / 4)}u + ${sw(`${h * TX}u + tx`, lb.swz)}];`);
    for (let g = 0; g < GM; g++)
      for (let i = 0; i < 4; i++)
        for (let h = 0; h < GN; h++)
          compute.push(`    acc_${g}_${i}_${h} = fma(vec4<f32>(a${kk}_${g}[${i}]), b${kk}_${h}, acc_${g}_${i}_${h});`);
  }

  const accs: string[] = [];
  for (let g = 0; g < GM; g++) for (let i = 0; i < 4; i++) for (let h = 0; h < GN; h++) accs.push(`acc_${g}_${i}_${h}`);
  // q = (g * 4 + i) * GN + h
  const epi = epilogueCode(
    s.epilogue,
    accs,
    (q) => `m0 + (${q} / ${4 * GN}u) * ${TY * 4}u + ty * 4u + (${q} / ${GN}u) % 4u`,
    (q) => `n0 + (${q} % ${GN}u) * ${TX * 4}u + tx * 4u`,
  );

  const code = `// ${name}: ${BM}x${BN} tile, BK=${BK}, ${TM}x${TN} per thread, ${threads} threads, double-buffered workgroup memory.
${P_STRUCT}
${decl}
var<workgroup> As: array<vec4<f32>, ${2 * aSize}>;
var<workgroup> Bs: array<vec4<f32>, ${2 * bSize}>;

@compute @workgroup_size(${threads})
fn main(${GRID_BUILTINS_WGSL}) {
  let pid = wid.x + wid.y * nwg.x;
  // Uniform per workgroup: the early exit keeps the barriers below in uniform control flow.
  if (pid >= p.tilesM * p.tilesN) { return; }
  // Grouped tile order: 8 tile-rows sweep the tile-columns together, so B panels are reused in L2.
  let inGroup = 8u * p.tilesN;
  let firstM = (pid / inGroup) * 8u;
  let gsz = min(p.tilesM - firstM, 8u);
  let tm = firstM + (pid % inGroup) % gsz;
  let tn = (pid % inGroup) / gsz;
  let batch = wid.z + p.batchBase;
  let aBase = batch * p.strideA;
  let bBase = batch * p.strideB;
  let cBase = batch * p.strideC;
  let m0 = tm * ${BM}u;
  let n0 = tn * ${BN}u;
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
${accDecl.join('\n')}
${regDecl.join('\n')}
  let nk = max(1u, (p.K + ${BK - 1}u) / ${BK}u);
${la.load('ra', '0u')}
${lb.load('rb', '0u')}
${la.store('ra', '0u')}
${lb.store('rb', '0u')}
  workgroupBarrier();
  for (var t = 0u; t < nk; t++) {
    let cur = t & 1u;
    let more = t + 1u < nk;
    if (more) {
      let k0 = (t + 1u) * ${BK}u;
${la.load('ra', 'k0')}
${lb.load('rb', 'k0')}
    }
    let aOff = cur * ${aSize}u;
    let bOff = cur * ${bSize}u;
${compute.join('\n')}
    if (more) {
      let aNext = (1u - cur) * ${aSize}u;
      let bNext = (1u - cur) * ${bSize}u;
${la.store('ra', 'aNext')}
${lb.store('rb', 'bNext')}
    }
    workgroupBarrier();
  }
${epi}
}
`;
  return { name, code, bindings: MATMUL_BINDINGS };
}

// ------------------------------------------------------------------------------------------------
// 'register' variant

function registerKernel(s: MatmulSpec): Kernel {
  const { BM, BN, TM, TN } = s.tile;
  const TX = BN / TN;
  const TY = BM / TM;
  const threads = TX * TY;
  const GN = TN / 4;
  const name = matmulName(s);
  const decl = declarations(s);
  const L: string[] = [];
  // Clamped row/column indices: reads past the edge stay in bounds, their results are dropped.
  for (let i = 0; i < TM; i++) L.push(`  let r${i} = min(rowBase + ${i}u, p.M - 1u);`);
  for (let j = 0; j < TN; j++) L.push(`  let c${j} = min(colBase + ${j}u, p.N - 1u);`);
  // vec4 groups of 4 rows (transA) / 4 columns (!transB) start at multiples of 4, clamped to the
  // last full group (the extent is a multiple of 4 when the vec flag is set).
  if (s.transA && s.vecA) for (let g = 0; g < TM / 4; g++) L.push(`  let rq${g} = min(rowBase + ${g * 4}u, p.M - 4u);`);
  if (!s.transB && s.vecB) for (let h = 0; h < GN; h++) L.push(`  let cq${h} = min(colBase + ${h * 4}u, p.N - 4u);`);
  for (let i = 0; i < TM; i++) for (let h = 0; h < GN; h++) L.push(`  var acc_${i}_${h} = vec4<f32>(0.0);`);

  // Main loop: 4 k per iteration. a(i, kk): scalar, b(h, kk): vec4 of 4 columns.
  const M: string[] = [];
  const aval: string[][] = [];
  if (!s.transA) {
    for (let i = 0; i < TM; i++) {
      M.push(
        s.vecA
          ? `    let a${i} = A[(aBase + r${i} * p.K + k) >> 2u];`
          : `    let a${i} = vec4<f32>(ldA(aBase + r${i} * p.K + k), ldA(aBase + r${i} * p.K + k + 1u), ldA(aBase + r${i} * p.K + k + 2u), ldA(aBase + r${i} * p.K + k + 3u));`,
      );
      aval.push([0, 1, 2, 3].map((kk) => `a${i}[${kk}]`));
    }
  } else {
    for (let i = 0; i < TM; i++) aval.push([]);
    for (let kk = 0; kk < 4; kk++) {
      if (s.vecA) {
        for (let g = 0; g < TM / 4; g++) {
          M.push(`    let at${kk}_${g} = A[(aBase + (k + ${kk}u) * p.M + rq${g}) >> 2u];`);
          for (let q = 0; q < 4; q++) aval[g * 4 + q][kk] = `at${kk}_${g}[${q}]`;
        }
      } else {
        for (let i = 0; i < TM; i++) {
          M.push(`    let at${kk}_${i} = ldA(aBase + (k + ${kk}u) * p.M + r${i});`);
          aval[i][kk] = `at${kk}_${i}`;
        }
      }
    }
  }
  const bvec: string[][] = Array.from({ length: GN }, () => []);
  if (!s.transB) {
    for (let kk = 0; kk < 4; kk++)
      for (let h = 0; h < GN; h++) {
        const o = `bBase + (k + ${kk}u) * p.N`;
        M.push(
          s.vecB
            ? `    let b${kk}_${h} = B[(${o} + cq${h}) >> 2u];`
            : `    let b${kk}_${h} = vec4<f32>(${[0, 1, 2, 3].map((j) => `ldB(${o} + c${h * 4 + j})`).join(', ')});`,
        );
        bvec[h][kk] = `b${kk}_${h}`;
      }
  } else {
    for (let j = 0; j < TN; j++) {
      const o = `bBase + c${j} * p.K + k`;
      M.push(
        s.vecB
          ? `    let bt${j} = B[(${o}) >> 2u];`
          : `    let bt${j} = vec4<f32>(ldB(${o}), ldB(${o} + 1u), ldB(${o} + 2u), ldB(${o} + 3u));`,
      );
    }
    for (let kk = 0; kk < 4; kk++)
      for (let h = 0; h < GN; h++)
        bvec[h][kk] = `vec4<f32>(${[0, 1, 2, 3].map((j) => `bt${h * 4 + j}[${kk}]`).join(', ')})`;
  }
  for (let kk = 0; kk < 4; kk++)
    for (let i = 0; i < TM; i++)
      for (let h = 0; h < GN; h++) M.push(`    acc_${i}_${h} = fma(vec4<f32>(${aval[i][kk]}), ${bvec[h][kk]}, acc_${i}_${h});`);

  // Tail: k % 4 leftovers, scalar loads.
  const T: string[] = [];
  for (let i = 0; i < TM; i++) T.push(`    let a${i} = ldA(aBase + ${s.transA ? `k * p.M + r${i}` : `r${i} * p.K + k`});`);
  for (let h = 0; h < GN; h++)
    T.push(
      `    let b${h} = vec4<f32>(${[0, 1, 2, 3]
        .map((j) => `ldB(bBase + ${s.transB ? `c${h * 4 + j} * p.K + k` : `k * p.N + c${h * 4 + j}`})`)
        .join(', ')});`,
    );
  for (let i = 0; i < TM; i++) for (let h = 0; h < GN; h++) T.push(`    acc_${i}_${h} = fma(vec4<f32>(a${i}), b${h}, acc_${i}_${h});`);

  const accs: string[] = [];
  for (let i = 0; i < TM; i++) for (let h = 0; h < GN; h++) accs.push(`acc_${i}_${h}`);
  // q = i * GN + h
  const epi = epilogueCode(
    s.epilogue,
    accs,
    (q) => `rowBase + ${q} / ${GN}u`,
    (q) => `colBase + (${q} % ${GN}u) * 4u`,
  );

  const code = `// ${name}: ${BM}x${BN} tile, ${TM}x${TN} per thread, ${threads} threads, no workgroup memory.
${P_STRUCT}
${decl}

@compute @workgroup_size(${threads})
fn main(${GRID_BUILTINS_WGSL}) {
  let pid = wid.x + wid.y * nwg.x;
  if (pid >= p.tilesM * p.tilesN) { return; }
  let tm = pid / p.tilesN;
  let tn = pid % p.tilesN;
  let batch = wid.z + p.batchBase;
  let aBase = batch * p.strideA;
  let bBase = batch * p.strideB;
  let cBase = batch * p.strideC;
  // With one thread row (TY = 1) every A address is uniform across the workgroup, which lets a
  // SIMD compiler (lavapipe) use scalar loads + broadcast instead of gathers.
  let tx = ${TY === 1 ? 'lid' : `lid % ${TX}u`};
  let ty = ${TY === 1 ? '0u' : `lid / ${TX}u`};
  let rowBase = tm * ${BM}u + ty * ${TM}u;
  let colBase = tn * ${BN}u + tx * ${TN}u;
${L.join('\n')}
  let K4 = p.K & ~3u;
  for (var k = 0u; k < K4; k += 4u) {
${M.join('\n')}
  }
  for (var k = K4; k < p.K; k++) {
${T.join('\n')}
  }
${epi}
}
`;
  return { name, code, bindings: MATMUL_BINDINGS };
}

export function matmulKernel(s: MatmulSpec): Kernel {
  const { BM, BN, TM, TN } = s.tile;
  if (TM % 4 !== 0 || TN % 4 !== 0 || BM % TM !== 0 || BN % TN !== 0) {
    throw new Error(`matmul tile ${s.tile.name}: TM/TN must be multiples of 4 dividing BM/BN`);
  }
  return s.variant === 'shared' ? sharedKernel(s) : registerKernel(s);
}

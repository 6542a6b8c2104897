// Batch-norm family (and the per-channel sums it shares with conv bias gradients). NCHW float32.
//
// Per-channel reductions run in two deterministic stages. Stage 1 (channelPartialsKernel): the
// N*H*W elements of channel c are cut into G contiguous chunks; workgroup (g, c) reduces chunk g with
// a strided per-thread loop and a fixed tree in workgroup memory. Stage 2 (one thread per channel)
// combines the G partials in index order. G depends only on the shape, so the bits are reproducible;
// splitting keeps a large GPU busy when channels are few and planes big (Meso-4's first layer has 8
// channels of N*256*256 values).
//
// Statistics for the forward pass use per-chunk two-pass moments (chunk mean, then the sum of squared
// deviations from it) merged with Chan et al.'s pairwise update, which stays accurate when |mean| >> std.
//
// Fused ReLU (NormAct): the stage-1, apply and input-gradient kernels can apply a ReLU to x as they
// load it ('pre': Meso's conv -> ReLU -> BN) and/or to y as they store it ('post': conv -> BN -> ReLU),
// and mask the gradient accordingly, so the ReLU never reads or writes an activation of its own. The
// expressions are those of the separate kernels (max(x, 0); select(0, g, v > 0) with v the BN output
// recomputed as the apply kernel computes it), so fused and unfused results agree bit for bit where
// the compiler contracts both alike. Without an act, every kernel's source is exactly as before.
//
// Pooled dy (PooledWalk): the backward kernels (the dy sums of stage 1 and dx) can read the gradient of
// a max pool after the norm and its argmax instead of a full-size dy, rebuilding dy as they load it
// (shaders/fused-pool-grad.ts), and stage 1 can also sum what the gradient of a bias added before the
// norm needs ('dyxhat-bias', finalized by bnBiasGradFinalizeKernel).
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';
import { POOLED_DY_FIELDS, pooledDyDecl, pooledDyWgsl, type PooledWalk } from './fused-pool-grad.js';

export const NORM_WG = 256;

/**
 * What stage 1 reduces. 'stats': chunk mean and M2 of x. 'sum': sum of dy. 'dyxhat': sums of dy and
 * dy * xhat. 'dyxhat-bias': those and the three sums the gradient of a bias added to x before the
 * norm needs (the preceding conv's, folded into this pass): sums of m * dy, m and m * xhat, with m
 * the fused pre-ReLU's mask (x > 0; 1 without one), dy masked as in 'dyxhat'.
 */
export type PartialMode = 'stats' | 'sum' | 'dyxhat' | 'dyxhat-bias';

/** The 'dyxhat-bias' extra accumulators and their terms (after dyxhatActTerms' prelude and the mask m). */
const BIAS_TERMS: [string, string][] = [['u', 'm * d'], ['v', 'm'], ['w', 'm * xh']];

/** The pre-ReLU's mask m of element `a` (1 without a pre-ReLU). */
function maskM(act: NormAct, zero: string, one: string): string {
  return act.pre ? `let m = select(${zero}, ${one}, x[a] > ${zero});` : `let m = ${one};`;
}

/** The batch-norm kernels' uniforms (g: chunks per channel; cnt: values per channel). */
const NORM_FIELDS = [
  ['n', 'u32'], ['c', 'u32'], ['hw', 'u32'], ['g', 'u32'],
  ['chunk', 'u32'], ['cnt', 'u32'], ['momentum', 'f32'], ['eps', 'f32'],
] as const;
export const NORM_UNIFORM = uniformStruct(NORM_FIELDS);
const NORM_STRUCT = NORM_UNIFORM.wgsl;

/**
 * The backward kernels' uniforms when dy comes pooled (the max pool's backward folded in,
 * shaders/fused-pool-grad.ts): the norm's fields, then the pool's geometry.
 */
export const NORM_POOLED_UNIFORM = uniformStruct([...NORM_FIELDS, ...POOLED_DY_FIELDS]);

/** Kernel-name suffix of a pooled dy. */
function pooledName(pooled: PooledWalk | null): string {
  return pooled ? `_pooled${pooled === 'any' ? '' : pooled}` : '';
}

/**
 * The struct, dy's declaration (binding `at`) and the bindings dy takes: one array, or with `pooled`
 * the pooled gradient and the argmax plus the functions that rebuild dy from them.
 */
function dySource(pooled: PooledWalk | null, at: number, t: string): { struct: string; decl: string; slots: number } {
  if (!pooled) return { struct: NORM_STRUCT, decl: `@group(0) @binding(${at}) var<storage, read> dy: array<${t}>;`, slots: 1 };
  return { struct: NORM_POOLED_UNIFORM.wgsl, decl: `${pooledDyDecl(at)}\n${pooledDyWgsl(pooled)}`, slots: 2 };
}

/** Declarations of a kernel's read inputs from binding 0 (dy as dySource gives it); the next free binding. */
function declareInputs(ins: readonly string[], typeOf: (v: string) => string, pooled: PooledWalk | null, t = 'f32'): { struct: string; decl: string; next: number } {
  let at = 0;
  let struct = NORM_STRUCT;
  const lines = ins.map((v) => {
    if (v === 'dy') {
      const d = dySource(pooled, at, t);
      at += d.slots;
      struct = d.struct;
      return d.decl;
    }
    return `@group(0) @binding(${at++}) var<storage, read> ${v}: array<${typeOf(v)}>;`;
  });
  return { struct, decl: lines.join('\n'), next: at };
}

/** ReLUs fused into the batch-norm kernels: on the input as loaded (pre) and on the output (post). */
export interface NormAct {
  readonly pre: boolean;
  readonly post: boolean;
}

export const NO_ACT: NormAct = { pre: false, post: false };

function actName(act: NormAct): string {
  return `${act.pre ? '_prerelu' : ''}${act.post ? '_relu' : ''}`;
}

const hasAct = (act: NormAct) => act.pre || act.post;

/** x[at] as the normalisation sees it (after a fused pre-ReLU); `zero` is 0 of the element type. */
function loadX(at: string, act: NormAct, zero: string): string {
  return act.pre ? `max(x[${at}], ${zero})` : `x[${at}]`;
}

/** dy with the fused post-ReLU's mask applied: 0 where the BN output v = xh * gamma + beta is <= 0. */
function maskDy(dy: string, xh: string, gm: string, bt: string, act: NormAct, zero: string): string {
  if (!act.post) return dy;
  const v = gm ? `${xh} * ${gm} + ${bt}` : xh;
  return `select(${zero}, ${dy}, ${v} > ${zero})`;
}

/**
 * Stage-1 inputs by mode; with a fused post-ReLU the dyxhat pass also reads gamma and beta (affine)
 * to recompute the BN output it masks by.
 */
function partialInputs(mode: PartialMode, act: NormAct, affine: boolean): string[] {
  if (mode === 'stats') return ['x'];
  if (mode === 'sum') return ['dy'];
  // 'dyxhat' and 'dyxhat-bias'
  return ['dy', 'x', 'mean', 'invstd', ...(act.post && affine ? ['gamma', 'beta'] : [])];
}

/** The dyxhat stage-1 terms with a fused ReLU: [prelude, xhat, masked dy] for element `a`. */
function dyxhatActTerms(act: NormAct, affine: boolean, zero: string, dy = 'dy[a]'): string {
  const gm = act.post && affine ? 'gamma[ch]' : '';
  return `let xh = (${loadX('a', act, zero)} - mu) * is; let d = ${maskDy(dy, 'xh', gm, 'beta[ch]', act, zero)};`;
}

/** Values per (channel, chunk) partial in `mode`. */
export function partialWidth(mode: PartialMode): number {
  return mode === 'sum' ? 1 : mode === 'dyxhat-bias' ? 5 : 2;
}

/**
 * This thread's elements of the chunk, beg + lid + j * WG, as addresses `a` of channel ch: the
 * (n, hw) position advances by constant steps, so there is no division per element.
 */
function walk(body: string): string {
  return `  {
    let sq = ${NORM_WG}u % p.hw;
    let sn = ${NORM_WG}u / p.hw;
    let i0 = beg + lid;
    var nb = i0 / p.hw;
    var q = i0 - nb * p.hw;
    for (var i = i0; i < end; i += ${NORM_WG}u) {
      let a = (nb * p.c + ch) * p.hw + q;
      ${body}
      q += sq;
      nb += sn;
      if (q >= p.hw) { q -= p.hw; nb += 1u; }
    }
  }`;
}

function treeReduce(arr: string): string {
  const lines: string[] = [];
  for (let s = NORM_WG / 2; s >= 1; s /= 2) {
    lines.push(`  if (lid < ${s}u) { ${arr}[lid] += ${arr}[lid + ${s}u]; }`);
    lines.push('  workgroupBarrier();');
  }
  return lines.join('\n');
}

/**
 * Stage 1. Bindings: 'stats' x; 'sum' dy; 'dyxhat' and 'dyxhat-bias' dy (with `pooled`: the pooled
 * gradient and argmax), x, mean, invstd; then parts ([C, G, width]), params. Grid: (G, C, 1).
 */
export function channelPartialsKernel(mode: PartialMode, act: NormAct = NO_ACT, affine = true, pooled: PooledWalk | null = null): Kernel {
  const name = `channel_partials_${mode}${actName(act)}${pooledName(pooled)}`;
  const ins = partialInputs(mode, act, affine);
  const { struct, decl, next } = declareInputs(ins, () => 'f32', pooled);
  const dy = pooled ? 'pdy(nb * p.c + ch, q)' : 'dy[a]';
  let body: string;
  if (mode === 'stats') {
    body = `  var s = 0.0;
${walk(`s += ${loadX('a', act, '0.0')};`)}
  red0[lid] = s;
  workgroupBarrier();
${treeReduce('red0')}
  let mu = red0[0] / f32(end - beg);
  workgroupBarrier();
  var ss = 0.0;
${walk(`let d = ${loadX('a', act, '0.0')} - mu; ss += d * d;`)}
  red0[lid] = ss;
  workgroupBarrier();
${treeReduce('red0')}
  if (lid == 0u) { parts[o * 2u] = mu; parts[o * 2u + 1u] = red0[0]; }`;
  } else if (mode === 'sum') {
    body = `  var s = 0.0;
${walk('s += dy[a];')}
  red0[lid] = s;
  workgroupBarrier();
${treeReduce('red0')}
  if (lid == 0u) { parts[o] = red0[0]; }`;
  } else if (mode === 'dyxhat-bias') {
    const accs = ['s', 't', ...BIAS_TERMS.map(([a]) => a)];
    body = `  let mu = mean[ch];
  let is = invstd[ch];
${accs.map((a) => `  var ${a} = 0.0;`).join('\n')}
${walk(`${dyxhatActTerms(act, affine, '0.0', dy)} ${maskM(act, '0.0', '1.0')} s += d; t += d * xh; ${BIAS_TERMS.map(([a, e]) => `${a} += ${e};`).join(' ')}`)}
${accs.map((a, i) => `  red${i}[lid] = ${a};`).join('\n')}
  workgroupBarrier();
${treeReduce('red0').replace(/red0\[lid\] \+= red0\[lid \+ (\d+)u\];/g, (_m, k: string) => accs.map((_a, i) => `red${i}[lid] += red${i}[lid + ${k}u];`).join(' '))}
  if (lid == 0u) {
${accs.map((_a, i) => `    parts[o * 5u + ${i}u] = red${i}[0];`).join('\n')}
  }`;
  } else {
    body = `  let mu = mean[ch];
  let is = invstd[ch];
  var s = 0.0;
  var t = 0.0;
${walk(hasAct(act) ? `${dyxhatActTerms(act, affine, '0.0', dy)} s += d; t += d * xh;` : `let d = ${dy}; s += d; t += d * ((x[a] - mu) * is);`)}
  red0[lid] = s;
  red1[lid] = t;
  workgroupBarrier();
${treeReduce('red0').replace(/red0\[lid\] \+= red0\[lid \+ (\d+)u\];/g, 'red0[lid] += red0[lid + $1u]; red1[lid] += red1[lid + $1u];')}
  if (lid == 0u) { parts[o * 2u] = red0[0]; parts[o * 2u + 1u] = red1[0]; }`;
  }
  const code = `// ${name}
${struct}
${decl}
@group(0) @binding(${next}) var<storage, read_write> parts: array<f32>;
@group(0) @binding(${next + 1}) var<uniform> p: P;
var<workgroup> red0: array<f32, ${NORM_WG}>;
${Array.from({ length: partialWidth(mode) - 1 }, (_, i) => `var<workgroup> red${i + 1}: array<f32, ${NORM_WG}>;`).join('\n')}

@compute @workgroup_size(${NORM_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let gi = wid.x;
  let ch = wid.y;
  let beg = gi * p.chunk;
  let end = min(beg + p.chunk, p.cnt);
  let o = ch * p.g + gi;
${body}
}
`;
  const bindings: Kernel['bindings'] = [...Array.from({ length: next }, () => 'read' as const), 'write', 'uniform'];
  return { name, code, bindings };
}

/** Threads per workgroup of the barrier-free stage 1. */
export const THREAD_PARTIALS_WG = 64;

/**
 * Stage 1 without workgroup memory or barriers, for software adapters (lavapipe), where each barrier
 * costs a thread rendezvous: one thread per (channel, chunk) walks its chunk in order and writes the
 * same partials as channelPartialsKernel (same layout, same finalize kernels). The chunk's elements run
 * along contiguous H*W planes, so each thread streams memory. Fast when C * G is at least a few
 * hundred; a GPU wants the workgroup variant. Bindings as channelPartialsKernel.
 * Grid: gridFor(C * G, THREAD_PARTIALS_WG).
 */
export function channelPartialsThreadKernel(mode: PartialMode, vec: 1 | 4 = 1, act: NormAct = NO_ACT, affine = true, pooled: PooledWalk | null = null): Kernel {
  const name = `channel_partials_${mode}_thread${vec === 4 ? '4' : ''}${actName(act)}${pooledName(pooled)}`;
  const ins = partialInputs(mode, act, affine);
  const t = vec === 4 ? 'vec4<f32>' : 'f32';
  const { struct, decl, next } = declareInputs(ins, (v) => (v === 'x' ? t : 'f32'), pooled, t);
  const dy = pooled ? `pdy${vec === 4 ? '4' : ''}(nb * p.c + ch, q)` : 'dy[a]';
  // vec = 4 (HW % 4 == 0 and chunk % 4 == 0, so a quad never straddles a plane or a chunk): the walk
  // goes by vec4s, four lane sums per block of 8 quads, folded pairwise into the totals; the same
  // expressions serve both, the per-channel values broadcasting over the lanes.
  const zero = vec === 4 ? 'vec4<f32>(0.0)' : '0.0';
  const fold = (b: string) => (vec === 4 ? `(${b}.x + ${b}.y) + (${b}.z + ${b}.w)` : b);
  const at = (e: string) => (vec === 4 ? `(${e}) / 4u` : e);
  // Walks [beg, end) of channel ch, (n, q) advancing without a division per element, adding the
  // terms into per-block accumulators folded into the totals every 32 elements: a serial float32 sum
  // over thousands of values would lose digits that the workgroup variant's tree keeps.
  const walkSum = (terms: [acc: string, expr: string][], pre = '') => `  {
${terms.map(([a]) => `    var ${a}_b = ${zero};`).join('\n')}
    var nb = beg / p.hw;
    var q = beg - nb * p.hw;
    var k = 0u;
    for (var i = beg; i < end; i += ${vec}u) {
      let a = ${at('(nb * p.c + ch) * p.hw + q')};
      ${pre}
${terms.map(([a, e]) => `      ${a}_b += ${e};`).join('\n')}
      k += 1u;
      if (k == ${32 / vec}u) {
${terms.map(([a]) => `        ${a} += ${fold(`${a}_b`)};
        ${a}_b = ${zero};`).join('\n')}
        k = 0u;
      }
      q += ${vec}u;
      if (q == p.hw) { q = 0u; nb += 1u; }
    }
${terms.map(([a]) => `    ${a} += ${fold(`${a}_b`)};`).join('\n')}
  }`;
  const first = `x[${at('(nb0 * p.c + ch) * p.hw + (beg - nb0 * p.hw)')}]${vec === 4 ? '.x' : ''}`;
  let body: string;
  if (mode === 'stats') {
    // Sums are also taken relative to the chunk's first value: values far from zero (mean 1000,
    // spread 0.01) would otherwise lose the mean's low digits, and the variance with them.
    body = `  let nb0 = beg / p.hw;
  let sh = ${act.pre ? `max(${first}, 0.0)` : first};
  var s = 0.0;
${walkSum([['s', `${loadX('a', act, zero)} - sh`]])}
  let mu = sh + s / f32(end - beg);
  var ss = 0.0;
${walkSum([['ss', 'd * d']], `let d = ${loadX('a', act, zero)} - mu;`)}
  parts[o * 2u] = mu;
  parts[o * 2u + 1u] = ss;`;
  } else if (mode === 'sum') {
    body = `  var s = 0.0;
${walkSum([['s', 'dy[a]']])}
  parts[o] = s;`;
  } else if (mode === 'dyxhat-bias') {
    const one = vec === 4 ? 'vec4<f32>(1.0)' : '1.0';
    const accs = ['s', 't', ...BIAS_TERMS.map(([a]) => a)];
    body = `  let mu = mean[ch];
  let is = invstd[ch];
${accs.map((a) => `  var ${a} = 0.0;`).join('\n')}
${walkSum([['s', 'd'], ['t', 'd * xh'], ...BIAS_TERMS], `${dyxhatActTerms(act, affine, zero, dy)} ${maskM(act, zero, one)}`)}
${accs.map((a, i) => `  parts[o * 5u + ${i}u] = ${a};`).join('\n')}`;
  } else {
    body = `  let mu = mean[ch];
  let is = invstd[ch];
  var s = 0.0;
  var t = 0.0;
${hasAct(act) ? walkSum([['s', 'd'], ['t', 'd * xh']], dyxhatActTerms(act, affine, zero, dy)) : walkSum([['s', 'd'], ['t', 'd * ((x[a] - mu) * is)']], `let d = ${dy};`)}
  parts[o * 2u] = s;
  parts[o * 2u + 1u] = t;`;
  }
  const code = `// ${name}
${struct}
${decl}
@group(0) @binding(${next}) var<storage, read_write> parts: array<f32>;
@group(0) @binding(${next + 1}) var<uniform> p: P;

@compute @workgroup_size(${THREAD_PARTIALS_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let o = ${linearIndexWgsl(THREAD_PARTIALS_WG)};
  if (o >= p.c * p.g) { return; }
  let ch = o / p.g;
  let gi = o - ch * p.g;
  let beg = gi * p.chunk;
  let end = min(beg + p.chunk, p.cnt);
${body}
}
`;
  const bindings: Kernel['bindings'] = [...Array.from({ length: next }, () => 'read' as const), 'write', 'uniform'];
  return { name, code, bindings };
}

export const FINALIZE_WG = 64;

/**
 * Stage 2 of the forward statistics, one thread per channel: merges the (mean, M2) partials in chunk
 * order, writes mean and invstd = 1/sqrt(var + eps) (biased var), and with `running` updates the
 * running stats in place with the unbiased variance: r = (1 - momentum) * r + momentum * stat.
 * Bindings: parts, mean, invstd, [runningMean, runningVar], params. Grid: gridFor(C, FINALIZE_WG).
 */
export function bnStatsFinalizeKernel(running: boolean): Kernel {
  const name = `bn_stats_finalize${running ? '_running' : ''}`;
  const code = `// ${name}
${NORM_STRUCT}
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> invstd: array<f32>;
${running ? `@group(0) @binding(3) var<storage, read_write> rmean: array<f32>;
@group(0) @binding(4) var<storage, read_write> rvar: array<f32>;` : ''}
@group(0) @binding(${running ? 5 : 3}) var<uniform> p: P;

@compute @workgroup_size(${FINALIZE_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let ch = ${linearIndexWgsl(FINALIZE_WG)};
  if (ch >= p.c) { return; }
  var na = 0.0;
  var mu = 0.0;
  var m2 = 0.0;
  for (var gi = 0u; gi < p.g; gi++) {
    let o = (ch * p.g + gi) * 2u;
    let nb = f32(min(p.chunk, p.cnt - gi * p.chunk));
    let mb = parts[o];
    let qb = parts[o + 1u];
    let nn = na + nb;
    let d = mb - mu;
    mu = mu + d * (nb / nn);
    m2 = m2 + qb + d * d * (na * nb / nn);
    na = nn;
  }
  let cnt = f32(p.cnt);
  let v = m2 / cnt;
  mean[ch] = mu;
  invstd[ch] = inverseSqrt(v + p.eps);
${running ? `  let m = p.momentum;
  rmean[ch] = (1.0 - m) * rmean[ch] + m * mu;
  rvar[ch] = (1.0 - m) * rvar[ch] + m * (m2 / max(cnt - 1.0, 1.0));` : ''}
}
`;
  const bindings: Kernel['bindings'] = running
    ? ['read', 'write', 'write', 'write', 'write', 'uniform']
    : ['read', 'write', 'write', 'uniform'];
  return { name, code, bindings };
}

/**
 * Stage 2 of plain sums, one thread per channel: out_q[c] = sum over chunks in order of parts[c, g, q]
 * for q < width. Bindings: parts, out0, [out1], params.
 */
export function channelSumFinalizeKernel(width: 1 | 2): Kernel {
  const name = `channel_sum_finalize_${width}`;
  const code = `// ${name}
${NORM_STRUCT}
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
${width === 2 ? '@group(0) @binding(2) var<storage, read_write> out1: array<f32>;' : ''}
@group(0) @binding(${width + 1}) var<uniform> p: P;

@compute @workgroup_size(${FINALIZE_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let ch = ${linearIndexWgsl(FINALIZE_WG)};
  if (ch >= p.c) { return; }
  var s0 = 0.0;
  var s1 = 0.0;
  for (var gi = 0u; gi < p.g; gi++) {
    let o = (ch * p.g + gi) * ${width}u;
    s0 += parts[o];
${width === 2 ? '    s1 += parts[o + 1u];' : ''}
  }
  out0[ch] = s0;
${width === 2 ? '  out1[ch] = s1;' : ''}
}
`;
  const bindings: Kernel['bindings'] = width === 2 ? ['read', 'write', 'write', 'uniform'] : ['read', 'write', 'uniform'];
  return { name, code, bindings };
}

/**
 * Stage 2 of 'dyxhat-bias', one thread per channel: sums the five partials in chunk order into
 * sdy = sum(dy) and sdyxh = sum(dy * xhat) (as channelSumFinalizeKernel(2)) and the gradient of a bias
 * added to x before the norm, which is the sum over the channel of the input gradient dx
 * (bnBackwardDxKernel's expression, summed term by term): training G * (sum(m dy) - sum(m) * sdy / cnt
 * - sum(m xhat) * sdyxh / cnt), eval G * sum(m dy), G = gamma * invstd. Bindings: parts, invstd,
 * [gamma], sdy, sdyxh, dbias, params. Grid: gridFor(C, FINALIZE_WG).
 */
export function bnBiasGradFinalizeKernel(training: boolean, affine: boolean): Kernel {
  const name = `bn_bias_grad_finalize${training ? '_train' : '_eval'}${affine ? '_affine' : ''}`;
  const ins = ['parts', 'invstd', ...(affine ? ['gamma'] : [])];
  const code = `// ${name}
${NORM_STRUCT}
${ins.map((v, i) => `@group(0) @binding(${i}) var<storage, read> ${v}: array<f32>;`).join('\n')}
@group(0) @binding(${ins.length}) var<storage, read_write> sdy: array<f32>;
@group(0) @binding(${ins.length + 1}) var<storage, read_write> sdyxh: array<f32>;
@group(0) @binding(${ins.length + 2}) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(${ins.length + 3}) var<uniform> p: P;

@compute @workgroup_size(${FINALIZE_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let ch = ${linearIndexWgsl(FINALIZE_WG)};
  if (ch >= p.c) { return; }
  var r = array<f32, 5>(0.0, 0.0, 0.0, 0.0, 0.0);
  for (var gi = 0u; gi < p.g; gi++) {
    let o = (ch * p.g + gi) * 5u;
    for (var q = 0u; q < 5u; q++) { r[q] += parts[o + q]; }
  }
  sdy[ch] = r[0];
  sdyxh[ch] = r[1];
  let g = ${affine ? 'gamma[ch] * invstd[ch]' : 'invstd[ch]'};
  let inv = 1.0 / f32(p.cnt);
  dbias[ch] = ${training ? 'g * (r[2] - r[3] * (r[0] * inv) - r[4] * (r[1] * inv))' : 'g * r[2]'};
}
`;
  return { name, code, bindings: [...ins.map(() => 'read' as const), 'write', 'write', 'write', 'uniform'] };
}

export const APPLY_WG = 64;

/**
 * Elementwise batch-norm kernels run on a 3-D grid (hw / APPLY_WG, C, N): the channel is the
 * workgroup's y, so the per-channel values are uniform loads and no thread divides to find its
 * channel (a software adapter scalarises vector integer division).
 */
/**
 * Elements per thread of the elementwise batch-norm kernels: 1, or 4 (a vec4 of the plane, when
 * HW % 4 == 0: software adapters load a vec4 for little more than a scalar, docs/lavapipe-speed.md).
 * The per-channel values stay scalars, broadcast over the vec4, so both give the same arithmetic.
 */
export type ApplyVec = 1 | 4;

/**
 * Thread (q in the plane, channel ch) handles batch items wid.z, wid.z + nwg.z, ...: one per thread
 * when the grid's z covers N (GPUs); on software adapters the host launches z = 1, since each
 * workgroup costs a scheduling round trip there.
 */
function applyLoop(body: string, vec: ApplyVec): string {
  const hw = vec === 4 ? '(p.hw / 4u)' : 'p.hw';
  return `  let q = wid.x * ${APPLY_WG}u + lid;
  if (q >= ${hw}) { return; }
  let ch = wid.y;
  let nbatch = p.cnt / p.hw;
  for (var nz = wid.z; nz < nbatch; nz += nwg.z) {
    let i = (nz * p.c + ch) * ${hw} + q;
${body
  .split('\n')
  .map((l) => (l ? '  ' + l : l))
  .join('\n')}
  }`;
}

/**
 * y = (x - mean[c]) * s[c] * gamma[c] + beta[c], with s = scale[c] (invstd) or, `fromVar`,
 * inverseSqrt(scale[c] + eps) (eval mode reads the running variance); a fused ReLU applies to x as
 * loaded (pre) or y as stored (post). Bindings: x, mean, scale, [gamma, beta], y, params.
 * Grid: (ceil(HW / APPLY_WG), C, N or fewer).
 */
export function bnApplyKernel(affine: boolean, fromVar: boolean, vec: ApplyVec = 1, act: NormAct = NO_ACT): Kernel {
  const name = `bn_apply${affine ? '_affine' : ''}${fromVar ? '_var' : ''}${vec === 4 ? '_vec4' : ''}${actName(act)}`;
  const t = vec === 4 ? 'vec4<f32>' : 'f32';
  const zero = vec === 4 ? 'vec4<f32>(0.0)' : '0.0';
  const out = affine ? 'xh * gamma[ch] + beta[ch]' : 'xh';
  const code = `// ${name}
${NORM_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<${t}>;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
${affine ? `@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;` : ''}
@group(0) @binding(${affine ? 5 : 3}) var<storage, read_write> y: array<${t}>;
@group(0) @binding(${affine ? 6 : 4}) var<uniform> p: P;

@compute @workgroup_size(${APPLY_WG})
fn main(${GRID_BUILTINS_WGSL}) {
${applyLoop(`  let s = ${fromVar ? 'inverseSqrt(scale[ch] + p.eps)' : 'scale[ch]'};
  let xh = (${loadX('i', act, zero)} - mean[ch]) * s;
  y[i] = ${act.post ? `max(${out}, ${zero})` : out};`, vec)}
}
`;
  const bindings: Kernel['bindings'] = affine
    ? ['read', 'read', 'read', 'read', 'read', 'write', 'uniform']
    : ['read', 'read', 'read', 'write', 'uniform'];
  return { name, code, bindings };
}

/**
 * dx of batch norm. Training (batch statistics):
 *   dx = gamma * invstd * (dy - sum(dy) / cnt - xhat * sum(dy * xhat) / cnt),  xhat = (x - mean) * invstd;
 * eval (running statistics are constants): dx = gamma * invstd * dy.
 * Bindings: training: dy, x, mean, invstd, sumDy, sumDyXhat; eval: dy, invstd (with a fused ReLU: dy,
 * x, mean, invstd); then [gamma], [beta with a fused post-ReLU], dx, params (n = numel). A fused ReLU
 * masks dy by the recomputed BN output (post) and dx by x > 0 (pre).
 */
export function bnBackwardDxKernel(affine: boolean, training: boolean, vec: ApplyVec = 1, act: NormAct = NO_ACT, pooled: PooledWalk | null = null): Kernel {
  const name = `bn_backward_dx${affine ? '_affine' : ''}${training ? '_train' : '_eval'}${vec === 4 ? '_vec4' : ''}${actName(act)}${pooledName(pooled)}`;
  // With a fused ReLU, eval mode also reads x and the (running) mean: the masks need x or the BN output.
  const stats = training ? ['dy', 'x', 'mean', 'invstd', 'sdy', 'sdyxh'] : hasAct(act) ? ['dy', 'x', 'mean', 'invstd'] : ['dy', 'invstd'];
  const ins = [...stats, ...(affine ? ['gamma'] : []), ...(affine && act.post ? ['beta'] : [])];
  const t = vec === 4 ? 'vec4<f32>' : 'f32';
  const zero = vec === 4 ? 'vec4<f32>(0.0)' : '0.0';
  const { struct, decl, next } = declareInputs(ins, (v) => (v === 'x' ? t : 'f32'), pooled, t);
  // Folded pool backward: dy of this thread's element(s), rebuilt from the pooled gradient.
  const dy = pooled ? 'dyp' : 'dy[i]';
  const pre = pooled ? `  let dyp = pdy${vec === 4 ? '4' : ''}(nz * p.c + ch, q${vec === 4 ? ' * 4u' : ''});\n` : '';
  const g = affine ? 'gamma[ch] * invstd[ch]' : 'invstd[ch]';
  let body: string;
  if (!hasAct(act)) {
    body = pre + (training
      ? `  let xh = (x[i] - mean[ch]) * invstd[ch];
  let inv = 1.0 / f32(p.cnt);
  dx[i] = ${g} * (${dy} - sdy[ch] * inv - xh * (sdyxh[ch] * inv));`
      : `  dx[i] = ${g} * ${dy};`);
  } else {
    const d = maskDy(dy, 'xh', affine ? 'gamma[ch]' : '', 'beta[ch]', act, zero);
    const r = training ? `${g} * (d - sdy[ch] * inv - xh * (sdyxh[ch] * inv))` : `${g} * d`;
    body = `${pre}  let xh = (${loadX('i', act, zero)} - mean[ch]) * invstd[ch];
  let inv = 1.0 / f32(p.cnt);
  let d = ${d};
  let r = ${r};
  dx[i] = ${act.pre ? `select(${zero}, r, x[i] > ${zero})` : 'r'};`;
  }
  const code = `// ${name}
${struct}
${decl}
@group(0) @binding(${next}) var<storage, read_write> dx: array<${t}>;
@group(0) @binding(${next + 1}) var<uniform> p: P;

@compute @workgroup_size(${APPLY_WG})
fn main(${GRID_BUILTINS_WGSL}) {
${applyLoop(body, vec)}
}
`;
  const bindings: Kernel['bindings'] = [...Array.from({ length: next }, () => 'read' as const), 'write', 'uniform'];
  return { name, code, bindings };
}

// The max pool's backward folded into the batch-norm backward that consumes it. Unfused, the pool's
// backward writes a full-size dy (its pooled gradient scattered to each window's argmax, zeros
// elsewhere) that the BN backward's two passes (the dy/xhat sums and dx) read back; folded, those
// passes read the pooled gradient and the pool's argmax instead and rebuild dy of each element as they
// load it, so the full-size dy is never written nor read (Meso-4's and CNN-5's block ends).
//
// Only for non-overlapping windows (stride >= kernel on both axes; Meso-4's and CNN-5's pools): then an
// input element lies in at most one window, so its dy is that window's gradient where the window's
// argmax is the element, else 0: the value the pool's backward writes (the cells kernel of
// shaders/pool.ts), so the folded and the unfused BN backward see the same dy, bit for bit.
//
// Tiling: none of its own; these are WGSL helpers the BN kernels (shaders/norm.ts) call where they
// load dy: a scalar per element, or a vec4 of four consecutive plane elements (one division pair per
// quad: the lanes step along the row, wrapping to the next where a quad straddles two rows).
import type { UniformScalar } from './uniform.js';

/** The pool's geometry as the BN kernels' uniforms add it (x's width, pooled size, window, stride, padding). */
export const POOLED_DY_FIELDS = [
  ['pw', 'u32'], ['poh', 'u32'], ['pow', 'u32'], ['pkh', 'u32'],
  ['pkw', 'u32'], ['psh', 'u32'], ['psw', 'u32'], ['ppt', 'u32'],
  ['ppl', 'u32'],
] as const satisfies readonly (readonly [string, UniformScalar])[];

/** The pool geometry a launcher packs into POOLED_DY_FIELDS (Pool2dGeometry's fields of those names). */
export type PooledDyGeometry = Readonly<Record<'w' | 'oh' | 'ow' | 'kh' | 'kw' | 'sh' | 'sw' | 'pt' | 'pl', number>>;

/** The uniform values of POOLED_DY_FIELDS for a pool geometry. */
export function pooledDyParams(g: PooledDyGeometry): Record<(typeof POOLED_DY_FIELDS)[number][0], number> {
  return { pw: g.w, poh: g.oh, pow: g.ow, pkh: g.kh, pkw: g.kw, psh: g.sh, psw: g.sw, ppt: g.pt, ppl: g.pl };
}

/** Whether the fold applies: every input element lies in at most one window. */
export function poolFoldSuits(g: Pick<PooledDyGeometry, 'kh' | 'kw' | 'sh' | 'sw'>): boolean {
  return g.sh >= g.kh && g.sw >= g.kw;
}

/** The two bindings that stand in for dy: the pooled gradient (f32) and the pool's argmax (i32). */
export function pooledDyDecl(first: number): string {
  return `@group(0) @binding(${first}) var<storage, read> gy: array<f32>;
@group(0) @binding(${first + 1}) var<storage, read> gidx: array<i32>;`;
}

/**
 * How the vec4 kernels rebuild dy: 'any' for every non-overlapping pool (per lane, two divisions each);
 * 2 or 4 where the windows are w x w with stride w (w = 2 or 4), unpadded, and W % 4 == 0, so a quad
 * lies in one row of windows and covers 4 / w of them: one division pair per quad and one gy / argmax
 * load per window (Meso-4's and CNN-5's pools; software adapters scalarise integer division).
 */
export type PooledWalk = 'any' | 2 | 4;

/** The quad walk that suits a pool geometry (see PooledWalk). */
export function pooledWalk(g: PooledDyGeometry): PooledWalk {
  const q = g.kw;
  return (q === 2 || q === 4) && g.sw === q && g.kh === g.sh && g.pt === 0 && g.pl === 0 && g.w % 4 === 0 ? q : 'any';
}

/**
 * WGSL functions over the uniforms `p` (with POOLED_DY_FIELDS) and the bindings of pooledDyDecl:
 * pdy(plane, e) is dy of element e of a plane (e = iy * W + ix), pdy4(plane, e) that of e .. e + 3
 * (e a multiple of 4 for `walk` 2 or 4).
 */
export function pooledDyWgsl(walk: PooledWalk): string {
  const quad =
    walk === 'any'
      ? `fn pdy4(pl: u32, e: u32) -> vec4<f32> {
  var iy = e / p.pw;
  var ix = e - iy * p.pw;
${[0, 1, 2, 3].map((l) => `  let d${l} = pdyAt(pl, iy, ix);${l < 3 ? '\n  ix += 1u;\n  if (ix == p.pw) { ix = 0u; iy += 1u; }' : ''}`).join('\n')}
  return vec4<f32>(d0, d1, d2, d3);
}`
      : `fn pdy4(pl: u32, e: u32) -> vec4<f32> {
  let iy = e / p.pw;
  let ix = e - iy * p.pw;
  let oy = iy / p.psh;
  if (oy >= p.poh) { return vec4<f32>(0.0); }
  let o = (pl * p.poh + oy) * p.pow + ix / ${walk}u;
  let b = i32(e);
  let g0 = gy[o];
  let i0 = gidx[o];
${
  walk === 2
    ? `  let g1 = gy[o + 1u];
  let i1 = gidx[o + 1u];
  return vec4<f32>(select(0.0, g0, i0 == b), select(0.0, g0, i0 == b + 1), select(0.0, g1, i1 == b + 2), select(0.0, g1, i1 == b + 3));`
    : `  return vec4<f32>(select(0.0, g0, i0 == b), select(0.0, g0, i0 == b + 1), select(0.0, g0, i0 == b + 2), select(0.0, g0, i0 == b + 3));`
}
}`;
  return `
/** dy at (iy, ix) of plane pl: its window's pooled gradient where the window's argmax is it, else 0. */
fn pdyAt(pl: u32, iy: u32, ix: u32) -> f32 {
  let ty = iy + p.ppt;
  let tx = ix + p.ppl;
  let oy = ty / p.psh;
  let ox = tx / p.psw;
  if (oy >= p.poh || ox >= p.pow || ty - oy * p.psh >= p.pkh || tx - ox * p.psw >= p.pkw) { return 0.0; }
  let o = (pl * p.poh + oy) * p.pow + ox;
  return select(0.0, gy[o], gidx[o] == i32(iy * p.pw + ix));
}

fn pdy(pl: u32, e: u32) -> f32 {
  let iy = e / p.pw;
  return pdyAt(pl, iy, e - iy * p.pw);
}

${quad}
`;
}

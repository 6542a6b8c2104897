// Float64 reference for grouped (and depthwise) convolution with the fused bias + clamp epilogue: plain
// loops over NCHW, geometry passed resolved, sharing no code with src/.
import { convOut, type ConvRefGeom } from './conv-ref.js';

/** y = clamp(grouped_conv2d(x, w) + b, lo, hi); w is [Cout, Cin/groups, KH, KW]. */
export function groupedConv2dRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | null,
  g: ConvRefGeom,
  groups: number,
  clamp: [number, number] = [-Infinity, Infinity],
): Float64Array {
  const [oh, ow] = convOut(g);
  const cpg = g.cin / groups;
  const opg = g.cout / groups;
  const [pt, pl] = g.pad;
  const y = new Float64Array(g.n * g.cout * oh * ow);
  for (let n = 0; n < g.n; n++)
    for (let co = 0; co < g.cout; co++) {
      const grp = Math.floor(co / opg);
      for (let oy = 0; oy < oh; oy++)
        for (let ox = 0; ox < ow; ox++) {
          let s = b ? b[co] : 0;
          for (let c = 0; c < cpg; c++) {
            const ci = grp * cpg + c;
            for (let ky = 0; ky < g.kh; ky++)
              for (let kx = 0; kx < g.kw; kx++) {
                const iy = oy * g.sh - pt + ky * g.dh;
                const ix = ox * g.sw - pl + kx * g.dw;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                s += x[((n * g.cin + ci) * g.h + iy) * g.w + ix] * w[((co * cpg + c) * g.kh + ky) * g.kw + kx];
              }
          }
          y[((n * g.cout + co) * oh + oy) * ow + ox] = Math.min(Math.max(s, clamp[0]), clamp[1]);
        }
    }
  return y;
}

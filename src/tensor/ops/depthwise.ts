// Launcher for the grouped / depthwise convolution family (src/shaders/depthwise.ts). Raw op, forward
// only (inference: the face detector), no autograd. Geometry and padding as conv2d (conv.ts), plus
// `groups`; the optional epilogue clamps y = conv + bias into [lo, hi] (ReLU6: [0, 6]).
import { GROUPED_UNIFORM, GROUPED_WG, groupedConvForwardKernel } from '../../shaders/depthwise.js';
import { gridFor } from '../../shaders/kernel.js';
import { cachedKernel, log2Class, plan, registerCandidates, registerFamily } from '../plan.js';
import { queue } from '../queue.js';
import { empty, type Shape, type Tensor } from '../tensor.js';
import { conv2dGeometry, type Conv2dGeometry, type Conv2dOptions, shapeStr } from './conv-geometry.js';

export interface GroupedConv2dOptions extends Conv2dOptions {
  /** Channel groups: Cin and Cout must be multiples; Cin for depthwise. */
  groups: number;
  /** Fused clamp of the result (after the bias); none when omitted. */
  clamp?: readonly [number, number];
}

export interface GroupedConv2dGeometry extends Conv2dGeometry {
  groups: number;
  /** Input channels per group (the weight's second dimension). */
  cpg: number;
}


export function groupedConv2dGeometry(xShape: Shape, wShape: Shape, opts: GroupedConv2dOptions): GroupedConv2dGeometry {
  const groups = opts.groups;
  if (!Number.isInteger(groups) || groups < 1) throw new Error(`grouped conv2d: groups=${groups} must be a positive integer`);
  if (xShape.length !== 4 || wShape.length !== 4) {
    throw new Error(`grouped conv2d: input ${shapeStr(xShape)} must be NCHW and weight ${shapeStr(wShape)} [Cout, Cin/groups, KH, KW]`);
  }
  const cin = xShape[1];
  const [cout, cpg] = wShape;
  if (cin % groups || cout % groups || cpg * groups !== cin) {
    throw new Error(`grouped conv2d: input ${shapeStr(xShape)} and weight ${shapeStr(wShape)} do not split into ${groups} groups`);
  }
  // The per-group problem has conv2d's geometry; reuse its checks and output size.
  const g = conv2dGeometry([xShape[0], cpg, xShape[2], xShape[3]], wShape, { ...opts, groups: 1 });
  return { ...g, cin, groups, cpg };
}

/**
 * Threads launched (the 'grouped' family): one per output ('full', for GPUs), or at most 64
 * workgroups that loop over the rest ('capped:64', as the elementwise maps on software adapters). The
 * results do not depend on it.
 */
registerFamily<{ n: number }>({
  family: 'grouped',
  about: 'grouped/depthwise conv2d forward: threads per output',
  shapeClass: (g) => `2^${log2Class(g.n)}`,
  defaultRule: (_g, dev, cands) => cands.find((c) => c.id === (dev.isSoftware ? 'capped:64' : 'full')) ?? cands[0],
});
registerCandidates<{ n: number }>('grouped', [{ variant: 'full' }, { variant: 'capped', tile: '64', params: { groups: 64 } }]);

function threadsFor(total: number): number {
  const p = plan<{ n: number }>('grouped', { n: total });
  return p.variant === 'capped' ? Math.min(total, (p.params.groups as number) * GROUPED_WG) : total;
}


/** y = clamp(grouped_conv2d(x, w) + bias, lo, hi). x [N, Cin, H, W], w [Cout, Cin/G, KH, KW], bias [Cout] or null. */
export function groupedConv2dForward(x: Tensor, w: Tensor, bias: Tensor | null, opts: GroupedConv2dOptions): Tensor {
  for (const [t, what] of [[x, 'input'], [w, 'weight'], [bias, 'bias']] as const) {
    if (t && t.dtype !== 'f32') throw new Error(`grouped conv2d ${what} must be f32, got ${t.dtype}`);
  }
  const g = groupedConv2dGeometry(x.shape, w.shape, opts);
  if (bias && (bias.rank !== 1 || bias.size !== g.cout)) throw new Error(`grouped conv2d: bias ${shapeStr(bias.shape)} must be [${g.cout}]`);
  const [lo, hi] = opts.clamp ?? [-3.4028234663852886e38, 3.4028234663852886e38];
  if (!(lo <= hi)) throw new Error(`grouped conv2d: clamp [${lo}, ${hi}] is empty`);
  const y = empty([g.n, g.cout, g.oh, g.ow]);
  if (y.size === 0) return y;
  if (Math.max(x.size, y.size, w.size) > 2 ** 31 - 1) throw new Error(`grouped conv2d: ${shapeStr(y.shape)} exceeds i32 indexing`);
  const k = cachedKernel(`grouped.fwd|${bias ? 'bias' : 'nobias'}`, () => groupedConvForwardKernel(!!bias));
  const threads = threadsFor(y.size);
  const { cin, h, w: width, cout, oh, ow, sh, sw, dh, dw, pt, pl, kh, kw, cpg } = g;
  const p = GROUPED_UNIFORM.pack({ total: y.size, cin, h, w: width, cout, oh, ow, sh, sw, dh, dw, pt, pl, kh, kw, cpg, opg: g.cout / g.groups, threads, lo, hi });
  const bufs = (bias ? [x, w, bias, y] : [x, w, y]).map((b) => ({ buffer: b.buf }));
  queue.dispatch(k, bufs, p, gridFor(threads, GROUPED_WG), () => ({ op: 'grouped.fwd', variant: 'direct', shape: `N${g.n} C${g.cin}->${g.cout} g${g.groups} ${g.h}x${g.w} k${g.kh}`, flops: 2 * y.size * g.cpg * g.kh * g.kw }));
  return y;
}

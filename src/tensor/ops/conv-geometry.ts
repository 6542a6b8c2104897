// Convolution geometry, shared by every windowed op (dense, strip, sparse and grouped conv, pooling):
// PyTorch's arguments plus Keras/TF 'same' padding for any stride, resolved to one record, and the
// shape class and dense FLOPs the planner and profiles key conv passes by.
//
// Padding is either symmetric (a number or [ph, pw]), explicit and asymmetric as
// [top, left, bottom, right] (note: not PyTorch F.pad's (left, right, top, bottom) order), 'valid'
// (no padding) or 'same' (TensorFlow/Keras: out = ceil(in / stride), extra padding at the bottom/right).
import type { Shape } from '../tensor.js';

export type Pair = number | readonly [number, number];
/** number | [ph, pw] (symmetric) | [top, left, bottom, right] | 'same' (Keras/TF) | 'valid'. */
export type Padding2d = number | readonly [number, number] | readonly [number, number, number, number] | 'same' | 'valid';

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Padding2d;
  dilation?: Pair;
  /** Only 1 is supported. */
  groups?: number;
}

/** Everything a conv kernel needs, resolved. Padding is [top, left, bottom, right]. */
export interface Conv2dGeometry {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  pt: number;
  pl: number;
  pb: number;
  pr: number;
  oh: number;
  ow: number;
}

export function pair(v: Pair | undefined, dflt: number, what: string): [number, number] {
  const p: [number, number] = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!p.every((x) => Number.isInteger(x))) throw new Error(`${what} (${p.join(', ')}) must be integers`);
  return p;
}

/**
 * Keras/TensorFlow 'same' padding along one axis: out = ceil(in / stride),
 * total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0), before = floor(total / 2), after = the rest.
 */
export function samePadding1d(inSize: number, k: number, stride: number, dilation = 1): { out: number; before: number; after: number } {
  const out = Math.ceil(inSize / stride);
  const ek = (k - 1) * dilation + 1;
  const total = Math.max((out - 1) * stride + ek - inSize, 0);
  const before = Math.floor(total / 2);
  return { out, before, after: total - before };
}

/** Keras/TF 'same' padding for a 2-D window, as [top, left, bottom, right]. */
export function samePadding2d(
  inHW: readonly [number, number],
  kernel: Pair,
  stride: Pair,
  dilation: Pair = 1,
): [number, number, number, number] {
  const [kh, kw] = pair(kernel, 1, 'kernel');
  const [sh, sw] = pair(stride, 1, 'stride');
  const [dh, dw] = pair(dilation, 1, 'dilation');
  const a = samePadding1d(inHW[0], kh, sh, dh);
  const b = samePadding1d(inHW[1], kw, sw, dw);
  return [a.before, b.before, a.after, b.after];
}

/** Resolves a Padding2d to [top, left, bottom, right] for a window over an input of inHW. */
export function resolvePadding(
  padding: Padding2d | undefined,
  inHW: readonly [number, number],
  kernel: readonly [number, number],
  stride: readonly [number, number],
  dilation: readonly [number, number],
): [number, number, number, number] {
  let p: [number, number, number, number];
  if (padding === undefined || padding === 'valid') p = [0, 0, 0, 0];
  else if (padding === 'same') p = samePadding2d(inHW, kernel, stride, dilation);
  else if (typeof padding === 'number') p = [padding, padding, padding, padding];
  else if (padding.length === 2) p = [padding[0], padding[1], padding[0], padding[1]];
  else if (padding.length === 4) p = [padding[0], padding[1], padding[2], padding[3]];
  else throw new Error(`padding ${JSON.stringify(padding)}: want a number, [ph, pw], [top, left, bottom, right], 'same' or 'valid'`);
  if (!p.every((x) => Number.isInteger(x) && x >= 0)) throw new Error(`padding [${p.join(', ')}] must be non-negative integers`);
  return p;
}

/** A shape as errors print it: `[2, 3, 32, 32]`. */
export function shapeStr(s: Shape): string {
  return `[${s.join(', ')}]`;
}

export function conv2dGeometry(xShape: Shape, wShape: Shape, opts: Conv2dOptions = {}): Conv2dGeometry {
  if (xShape.length !== 4) throw new Error(`conv2d: input must be NCHW, got ${shapeStr(xShape)}`);
  if (wShape.length !== 4) throw new Error(`conv2d: weight must be [Cout, Cin, KH, KW], got ${shapeStr(wShape)}`);
  if ((opts.groups ?? 1) !== 1) throw new Error(`conv2d: groups=${opts.groups} is not supported (only 1)`);
  const [n, cin, h, w] = xShape;
  const [cout, wcin, kh, kw] = wShape;
  if (wcin !== cin) throw new Error(`conv2d: input ${shapeStr(xShape)} has ${cin} channels, weight ${shapeStr(wShape)} expects ${wcin}`);
  if (kh < 1 || kw < 1 || cout < 1) throw new Error(`conv2d: weight ${shapeStr(wShape)} is empty`);
  const [sh, sw] = pair(opts.stride, 1, 'stride');
  const [dh, dw] = pair(opts.dilation, 1, 'dilation');
  if (sh < 1 || sw < 1 || dh < 1 || dw < 1) throw new Error(`conv2d: stride (${sh}, ${sw}) and dilation (${dh}, ${dw}) must be >= 1`);
  const [pt, pl, pb, pr] = resolvePadding(opts.padding, [h, w], [kh, kw], [sh, sw], [dh, dw]);
  const oh = Math.floor((h + pt + pb - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((w + pl + pr - dw * (kw - 1) - 1) / sw) + 1;
  if (oh < 1 || ow < 1) {
    throw new Error(`conv2d: input ${shapeStr(xShape)} is smaller than the (dilated) kernel ${kh}x${kw} with padding [${pt}, ${pl}, ${pb}, ${pr}]`);
  }
  return { n, cin, h, w, cout, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oh, ow };
}

export function conv2dOutputShape(xShape: Shape, wShape: Shape, opts: Conv2dOptions = {}): number[] {
  const g = conv2dGeometry(xShape, wShape, opts);
  return [g.n, g.cout, g.oh, g.ow];
}

export function convShapeClass(g: Conv2dGeometry): string {
  return `n${g.n} c${g.cin}>${g.cout} ${g.h}x${g.w} k${g.kh}x${g.kw} s${g.sh}x${g.sw} d${g.dh}x${g.dw} p${g.pt},${g.pl},${g.pb},${g.pr}`;
}

/** Dense FLOPs of one pass (each is the same GEMM size: 2 * N*OH*OW * Cout * Cin*KH*KW). */
export function convFlops(g: Conv2dGeometry): number {
  return 2 * g.n * g.oh * g.ow * g.cout * g.cin * g.kh * g.kw;
}

// Launchers for the pooling family (src/shaders/pool.ts). Raw ops, no autograd. NCHW float32.
// Padding as for conv2d: a number, [ph, pw], [top, left, bottom, right], 'valid' or 'same' (Keras/TF:
// out = ceil(in / stride); see samePadding2d). Every side's padding must be smaller than the kernel so
// that each window holds at least one real element.
import {
  POOL_UNIFORM,
  POOL_WG,
  avgPoolBackwardKernel,
  avgPoolForwardKernel,
  globalAvgPoolKernel,
  maxPoolBackwardKernel,
  maxPoolForwardKernel,
  maxPoolQuadKernel,
  poolBackwardCellsKernel,
} from '../../shaders/pool.js';
import { gridFor, type Kernel } from '../../shaders/kernel.js';
import { queue } from '../queue.js';
import { cachedKernel, plan, registerCandidates, registerFamily } from '../plan.js';
import { empty, type Shape, type Tensor } from '../tensor.js';
import { pair, resolvePadding, type Pair, type Padding2d, shapeStr } from './conv-geometry.js';
import { mapRaw } from './map.js';

export interface Pool2dOptions {
  kernel: Pair;
  /** Defaults to the kernel (PyTorch and Keras). */
  stride?: Pair;
  padding?: Padding2d;
  /**
   * Average pooling only: divide by the window size including padding (PyTorch's default, true) or
   * by the number of real elements (false; TensorFlow/Keras 'same' average pooling).
   */
  countIncludePad?: boolean;
}

export interface Pool2dGeometry {
  n: number;
  c: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
  pb: number;
  pr: number;
  oh: number;
  ow: number;
}


export function pool2dGeometry(xShape: Shape, opts: Pool2dOptions): Pool2dGeometry {
  if (xShape.length !== 4) throw new Error(`pool2d: input must be NCHW, got ${shapeStr(xShape)}`);
  const [n, c, h, w] = xShape;
  const [kh, kw] = pair(opts.kernel, 1, 'pool kernel');
  const [sh, sw] = opts.stride === undefined ? [kh, kw] : pair(opts.stride, 1, 'pool stride');
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1) throw new Error(`pool2d: kernel (${kh}, ${kw}) and stride (${sh}, ${sw}) must be >= 1`);
  const [pt, pl, pb, pr] = resolvePadding(opts.padding, [h, w], [kh, kw], [sh, sw], [1, 1]);
  if (pt >= kh || pb >= kh || pl >= kw || pr >= kw) {
    throw new Error(`pool2d: padding [${pt}, ${pl}, ${pb}, ${pr}] must be smaller than the kernel (${kh}, ${kw}) on every side`);
  }
  const oh = Math.floor((h + pt + pb - kh) / sh) + 1;
  const ow = Math.floor((w + pl + pr - kw) / sw) + 1;
  if (oh < 1 || ow < 1) throw new Error(`pool2d: input ${shapeStr(xShape)} is smaller than the ${kh}x${kw} window`);
  return { n, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr, oh, ow };
}

export function pool2dOutputShape(xShape: Shape, opts: Pool2dOptions): number[] {
  const g = pool2dGeometry(xShape, opts);
  return [g.n, g.c, g.oh, g.ow];
}

function params(g: Pool2dGeometry, total: number): Uint32Array {
  const { h, w, oh, ow, kh, kw, sh, sw, pt, pl, pb, pr } = g;
  return POOL_UNIFORM.pack({ total, planes: g.n * g.c, h, w, oh, ow, kh, kw, sh, sw, pt, pl, pb, pr, cy: cellsY(g), cx: cellsX(g) });
}

/** Stride cells tiling the padded input (see poolBackwardCellsKernel). */
function cellsY(g: Pool2dGeometry): number {
  return Math.ceil((g.h + g.pt) / g.sh);
}
function cellsX(g: Pool2dGeometry): number {
  return Math.ceil((g.w + g.pl) / g.sw);
}
/** Windows do not overlap: the backward can write each stride cell's block from one output. */
function nonOverlapping(g: Pool2dGeometry): boolean {
  return g.sh >= g.kh && g.sw >= g.kw;
}
function cellsTotal(g: Pool2dGeometry): number {
  return g.n * g.c * cellsY(g) * cellsX(g);
}

function cached(key: string, make: () => Kernel): Kernel {
  return cachedKernel(`pool|${key}`, make);
}

function checkF32(t: Tensor, what: string): void {
  if (t.dtype !== 'f32') throw new Error(`${what} must be f32, got ${t.dtype}`);
}

function checkDy(dy: Tensor, g: Pool2dGeometry, what: string): void {
  checkF32(dy, `${what} dy`);
  const want = [g.n, g.c, g.oh, g.ow];
  if (dy.shape.join() !== want.join()) throw new Error(`${what}: dy ${shapeStr(dy.shape)} should be ${shapeStr(want)}`);
}

/**
 * The row-quad max pool kernels (maxPoolQuadKernel) suit windows that tile the input in whole vec4
 * rows: kw = sw in {2, 4}, kh = sh, no padding, W % 4 == 0, H % sh == 0 (Meso-4's and CNN-5's pools).
 */
function quadSuits(g: Pool2dGeometry): boolean {
  const noPad = g.pt === 0 && g.pl === 0 && g.pb === 0 && g.pr === 0;
  return noPad && g.kw === g.sw && (g.kw === 2 || g.kw === 4) && g.kh === g.sh && g.w % 4 === 0 && g.h % g.sh === 0;
}

const poolShapeClass = (g: Pool2dGeometry) => `${g.kh}x${g.kw}s${g.sh}x${g.sw}p${g.pt},${g.pl},${g.pb},${g.pr}|${g.h}x${g.w}`;
for (const family of ['pool.max.fwd', 'pool.max.bwd'] as const) {
  registerFamily<Pool2dGeometry>({
    family,
    about: family === 'pool.max.fwd' ? 'max pool forward (values and argmax)' : 'max pool backward (dy to the argmax)',
    shapeClass: poolShapeClass,
    // Software adapters: row quads where they suit (vec4 loads or stores, no index divisions per
    // element; measured in docs/lavapipe-speed.md). GPUs keep the one-thread-per-element kernels; the
    // backward writes whole cells where windows do not overlap (no per-element window search).
    defaultRule: (_g, dev, cands) =>
      (dev.isSoftware ? cands.find((c) => c.variant === 'quad') : undefined) ?? cands.find((c) => c.variant === 'cells') ?? cands.find((c) => c.variant === 'window') ?? cands[0],
  });
  registerCandidates<Pool2dGeometry>(family, [{ variant: 'window' }, { variant: 'quad', suits: quadSuits }]);
}
// The backward's one-thread kernels: 'gather' (a thread per input element sums the dy of the windows
// that chose it), 'cells' (a thread per window writes its block, for non-overlapping windows), and
// 'window', the one that suits the shape (cells, else gather): what runs recorded before the two were
// candidates of their own, kept so those runs resume on the same kernel.
registerCandidates<Pool2dGeometry>('pool.max.bwd', [{ variant: 'gather' }, { variant: 'cells', suits: nonOverlapping }]);

/** Average pool backward: 'gather' per input element, or 'cells' per window where windows do not overlap. */
registerFamily<Pool2dGeometry>({
  family: 'pool.avg.bwd',
  about: 'average pool backward (dy / divisor spread over the window)',
  shapeClass: poolShapeClass,
  defaultRule: (_g, _dev, cands) => cands.find((c) => c.variant === 'cells') ?? cands[0],
});
registerCandidates<Pool2dGeometry>('pool.avg.bwd', [{ variant: 'gather' }, { variant: 'cells', suits: nonOverlapping }]);

function quadGrid(g: Pool2dGeometry): number {
  return g.n * g.c * g.oh * (g.w / 4);
}

export interface MaxPoolResult {
  y: Tensor;
  /** i32, shape of y: argmax position ih * W + iw within the input plane (first maximum on ties). */
  idx: Tensor;
}

export function maxPool2dForward(x: Tensor, opts: Pool2dOptions): MaxPoolResult {
  checkF32(x, 'max pool input');
  const g = pool2dGeometry(x.shape, opts);
  const shape = [g.n, g.c, g.oh, g.ow];
  const y = empty(shape);
  const idx = empty(shape, 'i32');
  const bufs = [{ buffer: x.buf }, { buffer: y.buf }, { buffer: idx.buf }];
  if (plan<Pool2dGeometry>('pool.max.fwd', g).variant === 'quad') {
    const kw = g.kw as 2 | 4;
    const k = cached(`maxfq${kw}`, () => maxPoolQuadKernel('fwd', kw));
    queue.dispatch(k, bufs, params(g, quadGrid(g)), gridFor(quadGrid(g), POOL_WG));
    return { y, idx };
  }
  const k = cached('maxf', maxPoolForwardKernel);
  queue.dispatch(k, bufs, params(g, y.size), gridFor(y.size, POOL_WG));
  return { y, idx };
}

/** dx of max pooling: routes each dy to its window's argmax (summed where windows overlap). */
export function maxPool2dBackward(dy: Tensor, idx: Tensor, xShape: Shape, opts: Pool2dOptions): Tensor {
  const g = pool2dGeometry(xShape, opts);
  checkDy(dy, g, 'max pool backward');
  if (idx.dtype !== 'i32' || idx.shape.join() !== dy.shape.join()) {
    throw new Error(`max pool backward: idx must be i32 ${shapeStr(dy.shape)}, got ${idx.dtype} ${shapeStr(idx.shape)}`);
  }
  const dx = empty(xShape);
  const bufs = [{ buffer: dy.buf }, { buffer: idx.buf }, { buffer: dx.buf }];
  const variant = plan<Pool2dGeometry>('pool.max.bwd', g).variant;
  if (variant === 'quad') {
    const kw = g.kw as 2 | 4;
    const k = cached(`maxbq${kw}`, () => maxPoolQuadKernel('bwd', kw));
    queue.dispatch(k, bufs, params(g, quadGrid(g)), gridFor(quadGrid(g), POOL_WG));
  } else if (variant === 'cells' || (variant === 'window' && nonOverlapping(g))) {
    const k = cached('maxbc', () => poolBackwardCellsKernel('max'));
    queue.dispatch(k, bufs, params(g, cellsTotal(g)), gridFor(cellsTotal(g), POOL_WG));
  } else {
    const k = cached('maxb', maxPoolBackwardKernel);
    queue.dispatch(k, bufs, params(g, dx.size), gridFor(dx.size, POOL_WG));
  }
  return dx;
}

export function avgPool2dForward(x: Tensor, opts: Pool2dOptions): Tensor {
  checkF32(x, 'avg pool input');
  const g = pool2dGeometry(x.shape, opts);
  const inc = opts.countIncludePad ?? true;
  const y = empty([g.n, g.c, g.oh, g.ow]);
  const k = cached(`avgf|${inc}`, () => avgPoolForwardKernel(inc));
  queue.dispatch(k, [{ buffer: x.buf }, { buffer: y.buf }], params(g, y.size), gridFor(y.size, POOL_WG));
  return y;
}

export function avgPool2dBackward(dy: Tensor, xShape: Shape, opts: Pool2dOptions): Tensor {
  const g = pool2dGeometry(xShape, opts);
  checkDy(dy, g, 'avg pool backward');
  const inc = opts.countIncludePad ?? true;
  const dx = empty(xShape);
  const bufs = [{ buffer: dy.buf }, { buffer: dx.buf }];
  if (plan<Pool2dGeometry>('pool.avg.bwd', g).variant === 'cells') {
    const k = cached(`avgbc|${inc}`, () => poolBackwardCellsKernel('avg', inc));
    queue.dispatch(k, bufs, params(g, cellsTotal(g)), gridFor(cellsTotal(g), POOL_WG));
  } else {
    const k = cached(`avgb|${inc}`, () => avgPoolBackwardKernel(inc));
    queue.dispatch(k, bufs, params(g, dx.size), gridFor(dx.size, POOL_WG));
  }
  return dx;
}

/** Global average pooling (PyTorch AdaptiveAvgPool2d(1)): [N, C, H, W] -> [N, C, 1, 1]. */
export function adaptiveAvgPool2dTo1(x: Tensor): Tensor {
  checkF32(x, 'global avg pool input');
  if (x.rank !== 4) throw new Error(`global avg pool: input must be NCHW, got ${shapeStr(x.shape)}`);
  const [n, c, h, w] = x.shape;
  const y = empty([n, c, 1, 1]);
  if (h * w === 0) throw new Error(`global avg pool: empty planes in ${shapeStr(x.shape)}`);
  const g: Pool2dGeometry = { n, c, h, w, kh: h, kw: w, sh: 1, sw: 1, pt: 0, pl: 0, pb: 0, pr: 0, oh: 1, ow: 1 };
  const k = cached('gap', globalAvgPoolKernel);
  queue.dispatch(k, [{ buffer: x.buf }, { buffer: y.buf }], params(g, n * c), gridFor(n * c, POOL_WG));
  return y;
}

/** dx of global average pooling: dy [N, C, 1, 1] (or [N, C]) spread as dy / (H * W) over xShape. */
export function adaptiveAvgPool2dTo1Backward(dy: Tensor, xShape: Shape): Tensor {
  checkF32(dy, 'global avg pool dy');
  if (xShape.length !== 4) throw new Error(`global avg pool backward: xShape must be NCHW, got ${shapeStr(xShape)}`);
  const [n, c, h, w] = xShape;
  if (dy.size !== n * c || dy.shape[0] !== n || dy.shape[1] !== c) {
    throw new Error(`global avg pool backward: dy ${shapeStr(dy.shape)} should be [${n}, ${c}, 1, 1]`);
  }
  return mapRaw('global_avg_pool_bwd', 'x0 / p.alpha', [{ t: dy, strides: [c, 1, 0, 0] }], xShape, 'f32', h * w);
}

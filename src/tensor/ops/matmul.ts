// Launcher for the matmul family (src/shaders/matmul.ts): shape checks, batch broadcasting, variant
// and tile choice, fused epilogue (alpha, bias, beta * C). No autograd here.
//
// matmul(a, b, opts) computes alpha * op(a) @ op(b) [+ bias] [+ beta * c]:
//   a: [M, K] or [B|1, M, K] ([K, M] / [B|1, K, M] with transA), b: [K, N] or [B|1, K, N] ([N, K] ...
//   with transB). A 2-D or batch-1 operand is broadcast over the other's batch. The result is
//   [M, N] when both are 2-D, else [B, M, N].
// Variant: opts.variant, else env TICKETLAB_MATMUL=shared|register, else 'register' on software
// devices (lavapipe: barriers are costly) and 'shared' on real GPUs.
import {
  C_INPLACE,
  C_INPUT,
  C_NONE,
  FLAG_BIAS,
  MATMUL_PARAM_WORDS,
  REGISTER_TILE,
  SHARED_LARGE,
  SHARED_SMALL,
  matmulKernel,
  type EpilogueForm,
  type MatmulVariant,
  type TileConfig,
} from '../../shaders/matmul.js';
import { grid1d, MAX_GROUPS_PER_DIM, type Grid, type Kernel } from '../../shaders/kernel.js';
import { device, onDeviceClose } from '../device.js';
import { Params } from '../params.js';
import type { PooledBuffer } from '../pool.js';
import { queue, type LaunchBinding } from '../queue.js';
import { empty, type Shape, Tensor } from '../tensor.js';

export type { MatmulVariant } from '../../shaders/matmul.js';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Scale of the product (default 1). */
  alpha?: number;
  /** [N] vector added to every row of the result. */
  bias?: Tensor;
  /** Addend of the result's shape, scaled by beta: C = alpha * AB + beta * c. */
  c?: Tensor;
  /** Scale of `c` (default 1; ignored without c). */
  beta?: number;
  /** Destination (default: a new tensor). May be the same tensor as `c`: accumulates in place. */
  out?: Tensor;
  /** Kernel variant (default: env TICKETLAB_MATMUL, else by device kind). */
  variant?: MatmulVariant;
  /** Tile config of the 'shared' variant (default: by size). For tests and benchmarks. */
  tile?: 'large' | 'small';
  /** Epilogue code shape (default: 'loop' on software devices, 'unrolled' on GPUs). For tests. */
  epilogue?: EpilogueForm;
}

export interface MatmulDims {
  batch: number;
  M: number;
  N: number;
  K: number;
  batchA: number;
  batchB: number;
  outShape: number[];
}

function shapeStr(s: Shape): string {
  return `[${s.join(', ')}]`;
}

/** Shapes of op(a) @ op(b) with batch broadcasting; throws naming both shapes on mismatch. */
export function matmulDims(aShape: Shape, bShape: Shape, transA = false, transB = false): MatmulDims {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || ra > 3 || rb < 2 || rb > 3) {
    throw new Error(`matmul: operands must be 2-D or 3-D, got ${shapeStr(aShape)} and ${shapeStr(bShape)}`);
  }
  const [a0, a1] = [aShape[ra - 2], aShape[ra - 1]];
  const [b0, b1] = [bShape[rb - 2], bShape[rb - 1]];
  const [M, K] = transA ? [a1, a0] : [a0, a1];
  const [Kb, N] = transB ? [b1, b0] : [b0, b1];
  const desc = () =>
    `${shapeStr(aShape)}${transA ? '^T' : ''} @ ${shapeStr(bShape)}${transB ? '^T' : ''}`;
  if (K !== Kb) throw new Error(`matmul: inner dims differ (${K} vs ${Kb}) in ${desc()}`);
  const batchA = ra === 3 ? aShape[0] : 1;
  const batchB = rb === 3 ? bShape[0] : 1;
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) {
    throw new Error(`matmul: batch sizes ${batchA} and ${batchB} do not broadcast in ${desc()}`);
  }
  const batch = batchA === 1 ? batchB : batchA;
  const outShape = ra === 3 || rb === 3 ? [batch, M, N] : [M, N];
  return { batch, M, N, K, batchA, batchB, outShape };
}

/** The variant used when the caller does not pick one. */
export function defaultMatmulVariant(): MatmulVariant {
  const env = process.env.TICKETLAB_MATMUL;
  if (env === 'shared' || env === 'register') return env;
  if (env) throw new Error(`TICKETLAB_MATMUL must be 'shared' or 'register', got '${env}'`);
  return device().info.isSoftware ? 'register' : 'shared';
}

/**
 * 'large' (128x128) once there are enough tiles to fill a big GPU (~2 workgroups per SM on an
 * H100's 132 SMs), else 'small' (64x64) for 4x more workgroups. Tune the threshold per device.
 */
function sharedTile(d: MatmulDims): TileConfig {
  const tiles = Math.ceil(d.M / 128) * Math.ceil(d.N / 128) * d.batch;
  return tiles >= 256 ? SHARED_LARGE : SHARED_SMALL;
}

const kernels = new Map<string, Kernel>();

/** A 256-byte storage buffer bound where a kernel's optional input (bias, C0) is unused. */
let dummy: PooledBuffer | null = null;
function dummyBuffer(): PooledBuffer {
  dummy ??= {
    buffer: device().gpu.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }),
    bytes: 256,
    lastBatch: -1,
  };
  return dummy;
}
onDeviceClose(() => {
  dummy = null;
});

export interface MatmulPlan {
  kernel: Kernel;
  buffers: LaunchBinding[];
  /** One entry per dispatch (batches beyond 65535 take several). */
  dispatches: { params: Uint32Array; grid: Grid }[];
  out: Tensor;
  dims: MatmulDims;
  flops: number;
}

/** Validates, allocates the output and builds the dispatches without recording them. */
export function planMatmul(a: Tensor, b: Tensor, o: MatmulOptions = {}): MatmulPlan {
  const transA = !!o.transA;
  const transB = !!o.transB;
  if (a.dtype !== 'f32' || b.dtype !== 'f32') throw new Error(`matmul: needs f32 operands, got ${a.dtype} and ${b.dtype}`);
  const d = matmulDims(a.shape, b.shape, transA, transB);
  const { M, N, K, batch } = d;
  const same = (t: Tensor, what: string) => {
    if (t.dtype !== 'f32') throw new Error(`matmul: ${what} must be f32, got ${t.dtype}`);
    if (t.shape.length !== d.outShape.length || t.shape.some((v, i) => v !== d.outShape[i])) {
      throw new Error(`matmul: ${what} has shape ${shapeStr(t.shape)}, the result is ${shapeStr(d.outShape)}`);
    }
  };
  if (o.bias) {
    if (o.bias.dtype !== 'f32' || o.bias.size !== N || o.bias.rank !== 1) {
      throw new Error(`matmul: bias must be an f32 vector of ${N}, got ${shapeStr(o.bias.shape)} ${o.bias.dtype}`);
    }
  }
  if (o.c) same(o.c, 'c');
  if (o.out) {
    same(o.out, 'out');
    if (o.out.storage === a.storage || o.out.storage === b.storage) throw new Error('matmul: out must not share storage with a or b');
    if (o.bias && o.out.storage === o.bias.storage) throw new Error('matmul: out must not share storage with bias');
    if (o.c && o.c !== o.out && o.c.storage === o.out.storage) {
      throw new Error('matmul: c and out share storage but are different tensors; pass the same tensor to accumulate in place');
    }
  }
  const cMode = !o.c ? C_NONE : o.out && o.out.storage === o.c.storage ? C_INPLACE : C_INPUT;
  const out = o.out ?? empty(d.outShape, 'f32');
  const flops = 2 * M * N * K * batch;
  const plan: MatmulPlan = { kernel: null as unknown as Kernel, buffers: [], dispatches: [], out, dims: d, flops };
  if (M === 0 || N === 0 || batch === 0) {
    plan.kernel = { name: 'matmul_empty', code: '', bindings: [] };
    return plan;
  }
  const variant = o.variant ?? defaultMatmulVariant();
  const tile = variant === 'register' ? REGISTER_TILE : o.tile ? (o.tile === 'large' ? SHARED_LARGE : SHARED_SMALL) : sharedTile(d);
  const spec = {
    variant,
    tile,
    transA,
    transB,
    // The shared variant reads contig-k operands (A not transposed, B transposed) in scalar loads
    // anyway (see sharedLoad), so the flag would only multiply kernel variants there.
    vecA: (transA ? M : K) % 4 === 0 && (variant === 'register' || transA),
    vecB: (transB ? K : N) % 4 === 0 && (variant === 'register' || !transB),
    vecC: N % 4 === 0,
    epilogue: o.epilogue ?? (device().info.isSoftware ? 'loop' : 'unrolled'),
  };
  const key = JSON.stringify(spec);
  let kernel = kernels.get(key);
  if (!kernel) {
    kernel = matmulKernel(spec);
    kernels.set(key, kernel);
  }
  plan.kernel = kernel;
  plan.buffers = [
    { buffer: a.buf },
    { buffer: b.buf },
    { buffer: o.bias ? o.bias.buf : dummyBuffer() },
    { buffer: cMode === C_INPUT ? o.c!.buf : dummyBuffer() },
    { buffer: out.buf },
  ];
  const flags = (o.bias ? FLAG_BIAS : 0) | (cMode << 1);
  const tilesM = Math.ceil(M / tile.BM);
  const tilesN = Math.ceil(N / tile.BN);
  const g = grid1d(tilesM * tilesN);
  const maxZ = Math.min(MAX_GROUPS_PER_DIM, device().limits.maxComputeWorkgroupsPerDimension ?? MAX_GROUPS_PER_DIM);
  for (let b0 = 0; b0 < batch; b0 += maxZ) {
    const p = new Params(MATMUL_PARAM_WORDS)
      .u(M)
      .u(N)
      .u(K)
      .u(tilesN)
      .u(tilesM)
      .u(d.batchA === 1 ? 0 : M * K)
      .u(d.batchB === 1 ? 0 : K * N)
      .u(M * N)
      .f(o.alpha ?? 1)
      .f(o.beta ?? 1)
      .u(b0)
      .u(flags);
    plan.dispatches.push({ params: p.view, grid: [g[0], g[1], Math.min(maxZ, batch - b0)] });
  }
  return plan;
}

/** Records a plan's dispatches on the shared queue. */
export function runMatmulPlan(plan: MatmulPlan): Tensor {
  for (const dsp of plan.dispatches) queue.dispatch(plan.kernel, plan.buffers, dsp.params, dsp.grid);
  return plan.out;
}

/** alpha * op(a) @ op(b) [+ bias] [+ beta * c]; see MatmulOptions. */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return runMatmulPlan(planMatmul(a, b, opts));
}

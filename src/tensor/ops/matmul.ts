// Launcher for the matmul family (src/shaders/matmul.ts): shape checks, batch broadcasting, variant
// and tile choice, fused epilogue (alpha, bias, beta * C). No autograd here.
//
// matmul(a, b, opts) computes alpha * op(a) @ op(b) [+ bias] [+ beta * c]:
//   a: [M, K] or [B|1, M, K] ([K, M] / [B|1, K, M] with transA), b: [K, N] or [B|1, K, N] ([N, K] ...
//   with transB). A 2-D or batch-1 operand is broadcast over the other's batch. The result is
//   [M, N] when both are 2-D, else [B, M, N].
// Variant: opts.variant (tests, benches), else the planner (family 'matmul', ../plan.ts): 'register' on
// software devices (lavapipe: barriers are costly) and 'shared' on real GPUs unless tuned or overridden.
import {
  C_INPLACE,
  C_INPUT,
  C_NONE,
  FLAG_BIAS,
  MATMUL_UNIFORM,
  REGISTER_TILE,
  SHARED_128X128_K16,
  SHARED_128X64,
  SHARED_256X64,
  SHARED_LARGE,
  SHARED_SMALL,
  matmulKernel,
  sharedTileBytes,
  type EpilogueForm,
  type MatmulVariant,
  type TileConfig,
} from '../../shaders/matmul.js';
import { grid1d, MAX_GROUPS_PER_DIM, type Grid, type Kernel } from '../../shaders/kernel.js';
import { device, onDeviceClose } from '../device.js';
import { cachedKernel, candidatePlan, defaultPlan, deviceTraits, plan as planKernel, registerCandidates, registerFamily, type BenchCase, type Plan } from '../plan.js';
import { fill } from './map.js';
import type { PooledBuffer } from '../pool.js';
import { queue, type LaunchBinding } from '../queue.js';
import type { DispatchTagArg } from '../trace.js';
import { empty, type Shape, Tensor } from '../tensor.js';
import { shapeStr } from './conv-geometry.js';

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
  /** Kernel variant (default: the planner's choice). For tests and benchmarks. */
  variant?: MatmulVariant;
  /** Tile of the 'shared' variant: a candidate tile label ('64x64', '128x128', ...; `ticketlab tune --list`). */
  tile?: string;
  /** Epilogue code shape (default: the planner's 'epilogue' family). For tests. */
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

/** What the planner sees of a product. */
export interface MatmulGeom {
  batch: number;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
}

const SHARED_TILES: readonly { t: TileConfig; big?: boolean }[] = [
  { t: SHARED_SMALL },
  { t: SHARED_LARGE },
  { t: SHARED_128X64, big: true },
  { t: SHARED_256X64, big: true },
  { t: SHARED_128X128_K16, big: true },
];
const TILE_BY_LABEL = new Map<string, TileConfig>([
  ['reg', REGISTER_TILE],
  ...SHARED_TILES.map(({ t }) => [t.name === 'large' ? '128x128' : t.name === 'small' ? '64x64' : t.name, t] as [string, TileConfig]),
]);

function matmulShapeClass(g: MatmulGeom): string {
  return `b${g.batch} ${g.M}x${g.N}x${g.K} ${g.transA ? 't' : 'n'}${g.transB ? 't' : 'n'}`;
}

registerFamily<MatmulGeom>({
  family: 'matmul',
  about: 'matmul / linear layers: C = alpha * op(A) @ op(B) + bias + beta * C0',
  shapeClass: matmulShapeClass,
  // 'register' on software devices; on GPUs 'shared', 128x128 once there are enough tiles to fill a
  // big GPU (~2 workgroups per SM on an H100's 132 SMs), else 64x64 for 4x more workgroups.
  defaultRule: (g, dev, cands) => {
    const want = dev.isSoftware ? 'register' : 'shared';
    const variant = cands.some((c) => c.variant === want) ? want : cands[0].variant;
    const of = cands.filter((c) => c.variant === variant);
    if (variant === 'register') return of[0];
    const tiles = Math.ceil(g.M / 128) * Math.ceil(g.N / 128) * g.batch;
    const label = tiles >= 256 ? '128x128' : '64x64';
    return of.find((c) => c.tile === label) ?? of[0];
  },
  bench: (g) => matmulBenchCase(g),
});

registerCandidates<MatmulGeom>('matmul', [
  { variant: 'register', params: { tile: 'reg' } },
  ...SHARED_TILES.map(({ t, big }) => {
    const label = [...TILE_BY_LABEL].find(([, v]) => v === t)![0];
    return {
      variant: 'shared',
      tile: label,
      params: { tile: label },
      tags: big ? ['big-gpu'] : [],
      suits: (_g: MatmulGeom, dev: { sharedBytes: number; invocations: number }) =>
        sharedTileBytes(t) <= dev.sharedBytes && (t.BM / t.TM) * (t.BN / t.TN) <= dev.invocations,
    };
  }),
]);

/**
 * How a matmul kernel writes its TM x TN results (the 'epilogue' family; shaders/matmul.ts): a loop,
 * which software adapters compile many times faster, or straight-line code, which GPUs run faster. The
 * results do not depend on it.
 */
registerFamily<Record<string, never>>({
  family: 'epilogue',
  about: "matmul's store of its register block: a loop (fast to compile on software adapters) or straight-line code",
  shapeClass: () => 'all',
  defaultRule: (_g, dev, cands) => cands.find((c) => c.variant === (dev.isSoftware ? 'loop' : 'unrolled')) ?? cands[0],
});
registerCandidates<Record<string, never>>('epilogue', [{ variant: 'loop' }, { variant: 'unrolled' }]);

function matmulBenchCase(g: MatmulGeom): BenchCase {
  const a = fill(g.batch > 1 ? [g.batch, ...(g.transA ? [g.K, g.M] : [g.M, g.K])] : g.transA ? [g.K, g.M] : [g.M, g.K], 0.5);
  const b = fill(g.batch > 1 ? [g.batch, ...(g.transB ? [g.N, g.K] : [g.K, g.N])] : g.transB ? [g.N, g.K] : [g.K, g.N], 0.25);
  return {
    run: () => matmul(a, b, { transA: g.transA, transB: g.transB }).dispose(),
    dispose: () => [a, b].forEach((t) => t.dispose()),
  };
}

/** The variant the planner gives a product of these dims. */
export function defaultMatmulVariant(d: MatmulGeom = { batch: 1, M: 64, N: 64, K: 64, transA: false, transB: false }): MatmulVariant {
  return planKernel('matmul', d).variant as MatmulVariant;
}

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
  /** Profile tag of the dispatches. */
  tag?: DispatchTagArg;
}

/** Options that name a kernel (tests, benches) bypass the planner. */
function explicitPlan(o: MatmulOptions, g: MatmulGeom): Plan | null {
  if (!o.variant && !o.tile) return null;
  const variant = o.variant ?? 'shared';
  if (variant === 'register') return candidatePlan('matmul', 'register');
  if (o.tile) return candidatePlan('matmul', `shared:${o.tile}`);
  // A variant without a tile: the static rule's tile for that variant.
  return defaultPlan('matmul', g, variant);
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
  const geom: MatmulGeom = { batch, M, N, K, transA, transB };
  const p = explicitPlan(o, geom) ?? planKernel('matmul', geom);
  const variant = p.variant as MatmulVariant;
  const tile = TILE_BY_LABEL.get(p.params.tile as string)!;
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
    epilogue: o.epilogue ?? (planKernel('epilogue', {}).variant as EpilogueForm),
  };
  plan.kernel = cachedKernel(`matmul|${JSON.stringify(spec)}`, () => matmulKernel(spec));
  plan.tag = () => ({ op: 'matmul', variant: p.id, shape: matmulShapeClass(geom), flops });
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
    const p = MATMUL_UNIFORM.pack({
      M,
      N,
      K,
      tilesN,
      tilesM,
      strideA: d.batchA === 1 ? 0 : M * K,
      strideB: d.batchB === 1 ? 0 : K * N,
      strideC: M * N,
      alpha: o.alpha ?? 1,
      beta: o.beta ?? 1,
      batchBase: b0,
      flags,
    });
    plan.dispatches.push({ params: p, grid: [g[0], g[1], Math.min(maxZ, batch - b0)] });
  }
  return plan;
}

/** Records a plan's dispatches on the shared queue. */
export function runMatmulPlan(plan: MatmulPlan): Tensor {
  for (const dsp of plan.dispatches) queue.dispatch(plan.kernel, plan.buffers, dsp.params, dsp.grid, plan.tag);
  return plan.out;
}

/** alpha * op(a) @ op(b) [+ bias] [+ beta * c]; see MatmulOptions. */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return runMatmulPlan(planMatmul(a, b, opts));
}

// Launchers of the fused optimizer kernels (src/shaders/optim.ts): one dispatch per parameter updates
// the weight and its state; with a 0/1 mask the kernel writes +0 to masked weights and state, which is
// the pruning contract (pruned stays exactly zero). nn/optim/optimizer.ts holds the bookkeeping.
import { optimKernel, optimMultiKernel, APPLY_MASK_KERNEL, MASK_UNIFORM, MULTI_HEAD_WORDS, MULTI_SEG_WORDS, OPTIM_UNIFORM, OPTIM_WG, type OptimKind } from '../../shaders/optim.js';
import { grid1d } from '../../shaders/kernel.js';
import { device } from '../device.js';
import { Params } from '../params.js';
import { maxBindingElements, type Arena } from '../arena.js';
import { gridFor, type Kernel } from '../../shaders/kernel.js';
import { queue } from '../queue.js';
import type { DispatchTag, DispatchTagArg } from '../trace.js';
import { cachedKernel, log2Class, plan, registerCandidates, registerFamily, type Plan } from '../plan.js';
import type { Tensor } from '../tensor.js';

/**
 * Planner family 'optim'. For one tensor: elements per thread, 'scalar', or 'vec4' for parameters of a
 * multiple of 4 elements; the static rule takes vec4 on software adapters (a quarter of the loads,
 * which set the cost there: the Adam updates of a ResNet-18 64 px step took 60 ms instead of 92 on a
 * 2-core lavapipe, which then moves about 5 GB/s of weights, gradients and moments), scalar on GPUs.
 * For a whole step's parameter list (`tensors` set): 'multi', one dispatch for up to
 * maxStorageBuffersPerShaderStage - 3 parameters (optimMultiKernel; the static rule on every adapter),
 * or 'scalar' / 'vec4', a dispatch per parameter (vec4 where its size allows), the kernels before it.
 * All give the same bits.
 */
interface OptimGeom {
  /** Elements (of the list: all parameters together). */
  n: number;
  /** Parameters in the list; absent for one tensor. */
  tensors?: number;
}
/**
 * On a software adapter the multi kernel's gradient switch costs about 3x the per-tensor kernel per
 * element (lavapipe, Adam: CNN-5's 301k floats took 7.1 ms against 1.9, Meso-4's 28k 0.24 ms against
 * 0.66 for 20 dispatches), so there a tensor larger than one workgroup's share (256 threads x 8 vec4s)
 * keeps its own vec4 dispatch and only the small ones (biases, batch norm, thin layers) share one.
 */
const MULTI_R8_SOLO = 256 * 8 * 4;

registerFamily<OptimGeom>({
  family: 'optim',
  about: 'fused optimizer updates: one element or a vec4 per thread (n % 4 == 0); a step\'s parameter list: multi (one dispatch) or a dispatch per tensor',
  shapeClass: (g) => (g.tensors !== undefined ? `list 2^${log2Class(g.n)}` : `2^${log2Class(g.n)}${g.n % 4 === 0 ? ' flat4' : ''}`),
  defaultRule: (g, dev, cands) =>
    cands.find((c) => (g.tensors !== undefined ? c.variant === 'multi' && c.tile === (dev.isSoftware ? 'r8' : 'r1') : c.variant === (dev.isSoftware ? 'vec4' : 'scalar'))) ??
    cands.find((c) => c.variant === 'multi') ??
    cands[0],
});
registerCandidates<OptimGeom>('optim', [
  { variant: 'scalar' },
  { variant: 'vec4', suits: (g) => g.tensors !== undefined || g.n % 4 === 0 },
  // solo: tensors above this many elements get a per-tensor dispatch of their own (0: none do).
  { variant: 'multi', tile: 'r1', params: { rows: 1, solo: 0 }, suits: (g) => g.tensors !== undefined },
  { variant: 'multi', tile: 'r8', params: { rows: 8, solo: MULTI_R8_SOLO }, suits: (g) => g.tensors !== undefined },
]);

function kernelFor(kind: OptimKind, masked: boolean, vec4: boolean): Kernel {
  return cachedKernel(`optim|${kind}|${masked}|${vec4 ? 'v4' : 's'}`, () => optimKernel(kind, masked, vec4));
}

/** x *= mask in place. */
export function applyMaskInPlace(x: Tensor, mask: Tensor): void {
  if (x.size !== mask.size) throw new Error(`mask of ${mask.size} elements for ${x}`);
  queue.dispatch(APPLY_MASK_KERNEL, [{ buffer: x.buf }, { buffer: mask.buf }], MASK_UNIFORM.pack({ n: x.size }), gridFor(x.size, OPTIM_WG));
}

/** Hyper-parameters of one fused update, in the kernel's uniform order. */
export interface OptimHyper {
  kind: OptimKind;
  /** 1-based step count (Adam's bias correction). */
  step: number;
  lr: number;
  weightDecay: number;
  /** SGD: momentum and dampening; Adam: beta1 and beta2. */
  b1: number;
  b2: number;
  eps: number;
  bc1: number;
  bc2: number;
  nesterov: boolean;
}

/** One fused update of `param` from its gradient and two state tensors (momentum / Adam moments). */
export function optimStep(h: OptimHyper, param: Tensor, grad: Tensor, s1: Tensor, s2: Tensor, mask: Tensor | undefined, tag?: DispatchTagArg): void {
  tensorStep(h, plan<OptimGeom>('optim', { n: param.size }), param, grad, s1, s2, mask, tag);
}

function tensorStep(h: OptimHyper, pl: Plan, param: Tensor, grad: Tensor, s1: Tensor, s2: Tensor, mask: Tensor | undefined, tag?: DispatchTagArg): void {
  const vec4 = pl.variant === 'vec4';
  const n = vec4 ? param.size / 4 : param.size;
  const p = OPTIM_UNIFORM.pack({ n, step: h.step, lr: h.lr, wd: h.weightDecay, b1: h.b1, b2: h.b2, eps: h.eps, bc1: h.bc1, bc2: h.bc2, nesterov: h.nesterov ? 1 : 0 });
  const bufs = [{ buffer: param.buf }, { buffer: grad.buf }, { buffer: s1.buf }, { buffer: s2.buf }];
  if (mask) bufs.push({ buffer: mask.buf });
  // The caller's tag says dense or masked; the planner's variant is appended ('masked+vec4').
  const tagged = tag && ((): DispatchTag => {
    const t = typeof tag === 'function' ? tag() : tag;
    return { ...t, variant: t.variant ? `${t.variant}+${pl.id}` : pl.id };
  });
  queue.dispatch(kernelFor(h.kind, !!mask, vec4), bufs, p, gridFor(n, OPTIM_WG), tagged);
}

// ---------------------------------------------------------------------------------------------
// A step's parameter list

/** One parameter of a step: its tensors (in the arenas for 'multi') and its own lr and weight decay. */
export interface OptimSegment {
  param: Tensor;
  grad: Tensor;
  s1: Tensor;
  s2: Tensor;
  mask?: Tensor;
  lr: number;
  weightDecay: number;
  /** The per-tensor dispatch's profile tag. */
  tag?: DispatchTagArg;
}

/** Where 'multi' finds the parameters (w), both moments (s) and the masks (m) of a list. */
export interface OptimArenas {
  w: Arena;
  s: Arena;
  m: Arena | null;
}

/** The step's hyper-parameters shared by every parameter (lr and weight decay are per segment). */
export type OptimShared = Omit<OptimHyper, 'lr' | 'weightDecay'>;

/** Most parameters one multi-tensor dispatch takes: its uniform table stays small, and so does the switch. */
const MULTI_MAX_TENSORS = 64;

/**
 * Updates every parameter of a step: with the planner's 'multi', one dispatch per
 * maxStorageBuffersPerShaderStage - 3 parameters (usually all of them in one to a few; on software
 * adapters tensors above the tile's `solo` size keep a dispatch of their own); otherwise a dispatch
 * per parameter ('vec4' where its size allows, else 'scalar'). `tag` names the multi
 * dispatches in profiles, booked to no layer (the model's row), since one spans many.
 */
export function optimStepList(h: OptimShared, segs: readonly OptimSegment[], arenas: OptimArenas, tag: { op: string }): void {
  if (!segs.length) return;
  const total = segs.reduce((a, s) => a + s.param.size, 0);
  const pl = plan<OptimGeom>('optim', { n: total, tensors: segs.length });
  const solo = pl.variant === 'multi' ? Number(pl.params.solo ?? 0) : 0;
  const alone = pl.variant !== 'multi' ? segs : solo > 0 ? segs.filter((s) => s.param.size > solo) : [];
  for (const s of alone) {
    // The per-tensor kernels: vec4 where the size allows it (and the list asked for vec4 or multi).
    const v = pl.variant !== 'scalar' && s.param.size % 4 === 0 ? 'vec4' : 'scalar';
    tensorStep({ ...h, lr: s.lr, weightDecay: s.weightDecay }, { ...pl, id: v, variant: v }, s.param, s.grad, s.s1, s.s2, s.mask, s.tag);
  }
  if (pl.variant !== 'multi') return;
  // In arena order, so each chunk binds a contiguous run of the arenas.
  const shared = (solo > 0 ? segs.filter((s) => s.param.size <= solo) : [...segs]).sort((a, b) => arenas.w.offsetOf(a.param) - arenas.w.offsetOf(b.param));
  if (!shared.length) return;
  const limit = device().limits.maxStorageBuffersPerShaderStage ?? 8;
  const maxBind = maxBindingElements();
  // A chunk ends where one more parameter would need more bindings than the adapter has, or would
  // stretch an arena range past what one binding may cover (two moments per parameter in one range).
  let chunk: OptimSegment[] = [];
  let masked = false;
  for (const s of shared) {
    const m = masked || !!s.mask;
    const widest = () => {
      const r = rangeOf(arenas.s, [...chunk, s].flatMap((c) => [c.s1, c.s2]));
      return r.end - r.start;
    };
    if (chunk.length && (chunk.length + 1 > Math.min(MULTI_MAX_TENSORS, limit - (m ? 3 : 2)) || widest() > maxBind)) {
      multiDispatch(h, chunk, masked, arenas, tag.op, pl);
      chunk = [];
    }
    masked = chunk.length ? masked || !!s.mask : !!s.mask;
    chunk.push(s);
  }
  multiDispatch(h, chunk, masked, arenas, tag.op, pl);
}

/** The element range [start, end) of an arena that a chunk's tensors occupy (starts are aligned). */
function rangeOf(a: Arena, ts: readonly Tensor[]): { start: number; end: number } {
  let start = Infinity;
  let end = 0;
  for (const t of ts) {
    const o = a.offsetOf(t);
    start = Math.min(start, o);
    end = Math.max(end, o + Math.ceil(t.size / 4) * 4);
  }
  return { start, end };
}

function multiDispatch(h: OptimShared, chunk: readonly OptimSegment[], masked: boolean, arenas: OptimArenas, op: string, pl: Plan): void {
  const k = chunk.length;
  const rows = Number(pl.params.rows ?? 1);
  const kernel = cachedKernel(`optim|multi|${h.kind}|${k}|${masked}|${rows}`, () => optimMultiKernel(h.kind, k, masked, rows));
  const w = rangeOf(arenas.w, chunk.map((s) => s.param));
  const st = rangeOf(arenas.s, chunk.flatMap((s) => [s.s1, s.s2]));
  const marena = arenas.m;
  if (masked && !marena) throw new Error('optimStepList: masked parameters without a mask arena');
  const mr = masked && marena ? rangeOf(marena, chunk.flatMap((s) => (s.mask ? [s.mask] : []))) : null;
  const p = new Params(MULTI_HEAD_WORDS + MULTI_SEG_WORDS * k)
    .u(k).u(h.step).f(h.b1).f(h.b2)
    .f(h.eps).f(h.bc1).f(h.bc2).u(h.nesterov ? 1 : 0);
  let groups = 0;
  for (const s of chunk) {
    const n = s.param.size;
    const vec = (a: Arena, t: Tensor, base: number) => (a.offsetOf(t) - base) / 4;
    p.u(groups).u(n).u(vec(arenas.w, s.param, w.start)).u(s.mask ? 1 : 0);
    p.u(vec(arenas.s, s.s1, st.start)).u(vec(arenas.s, s.s2, st.start)).u(s.mask && marena && mr ? vec(marena, s.mask, mr.start) : 0).u(0);
    p.f(s.lr).f(s.weightDecay).f(0).f(0);
    groups += Math.ceil(Math.ceil(n / 4) / (OPTIM_WG * rows));
  }
  const bind = (a: Arena, r: { start: number; end: number }) => ({ buffer: a.buf, offset: r.start * 4, size: (r.end - r.start) * 4 });
  const bufs = [bind(arenas.w, w), bind(arenas.s, st), ...(mr && marena ? [bind(marena, mr)] : []), ...chunk.map((s) => ({ buffer: s.grad.buf }))];
  const total = chunk.reduce((a, s) => a + s.param.size, 0);
  queue.dispatch(kernel, bufs, p.view, grid1d(groups), () => ({
    op,
    variant: `${masked ? 'masked' : 'dense'}+${pl.id}`,
    shape: `${k}x${total}`,
    phase: 'optimizer',
  }));
}

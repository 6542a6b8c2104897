// Launchers of the fused optimizer kernels (src/shaders/optim.ts): one dispatch per parameter updates
// the weight and its state; with a 0/1 mask the kernel writes +0 to masked weights and state, which is
// the pruning contract (pruned stays exactly zero). nn/optim/optimizer.ts holds the bookkeeping.
import { optimKernel, APPLY_MASK_KERNEL, MASK_UNIFORM, OPTIM_UNIFORM, OPTIM_WG, type OptimKind } from '../../shaders/optim.js';
import { gridFor, type Kernel } from '../../shaders/kernel.js';
import { queue } from '../queue.js';
import type { DispatchTag, DispatchTagArg } from '../trace.js';
import { cachedKernel, log2Class, plan, registerCandidates, registerFamily } from '../plan.js';
import type { Tensor } from '../tensor.js';

/**
 * Elements per thread (planner family 'optim'): 'scalar', or 'vec4' for parameters of a multiple of 4
 * elements; the static rule takes vec4 on software adapters (a quarter of the loads, which set the
 * cost there: the Adam updates of a ResNet-18 64 px step took 60 ms instead of 92 on a 2-core lavapipe,
 * which then moves about 5 GB/s of weights, gradients and moments), scalar on GPUs.
 * Both give the same bits.
 */
interface OptimGeom {
  n: number;
}
registerFamily<OptimGeom>({
  family: 'optim',
  about: 'fused optimizer updates: one element or a vec4 per thread (n % 4 == 0)',
  shapeClass: (g) => `2^${log2Class(g.n)}${g.n % 4 === 0 ? ' flat4' : ''}`,
  defaultRule: (_g, dev, cands) => cands.find((c) => c.variant === (dev.isSoftware ? 'vec4' : 'scalar')) ?? cands[0],
});
registerCandidates<OptimGeom>('optim', [{ variant: 'scalar' }, { variant: 'vec4', suits: (g) => g.n % 4 === 0 }]);

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
  const pl = plan<OptimGeom>('optim', { n: param.size });
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

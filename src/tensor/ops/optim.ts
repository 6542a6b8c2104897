// Launchers of the fused optimizer kernels (src/shaders/optim.ts): one dispatch per parameter updates
// the weight and its state; with a 0/1 mask the kernel writes +0 to masked weights and state, which is
// the pruning contract (pruned stays exactly zero). nn/optim/optimizer.ts holds the bookkeeping.
import { optimKernel, APPLY_MASK_KERNEL, MASK_UNIFORM, OPTIM_UNIFORM, OPTIM_WG, type OptimKind } from '../../shaders/optim.js';
import { gridFor, type Kernel } from '../../shaders/kernel.js';
import { queue } from '../queue.js';
import type { DispatchTagArg } from '../trace.js';
import { cachedKernel } from '../plan.js';
import type { Tensor } from '../tensor.js';

function kernelFor(kind: OptimKind, masked: boolean): Kernel {
  return cachedKernel(`optim|${kind}|${masked}`, () => optimKernel(kind, masked));
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
  const p = OPTIM_UNIFORM.pack({ n: param.size, step: h.step, lr: h.lr, wd: h.weightDecay, b1: h.b1, b2: h.b2, eps: h.eps, bc1: h.bc1, bc2: h.bc2, nesterov: h.nesterov ? 1 : 0 });
  const bufs = [{ buffer: param.buf }, { buffer: grad.buf }, { buffer: s1.buf }, { buffer: s2.buf }];
  if (mask) bufs.push({ buffer: mask.buf });
  queue.dispatch(kernelFor(h.kind, !!mask), bufs, p, gridFor(param.size, OPTIM_WG), tag);
}

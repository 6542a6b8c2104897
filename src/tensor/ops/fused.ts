// Fused ops and their planner families. Each family has two candidates, 'fused' and 'unfused', so the
// choice between one kernel and the chain of separate ones is the planner's like every other kernel
// choice (recorded in kernels.json and pinned on --resume; `TICKETLAB_KERNELS=fused:unfused` or
// bench/train-step.ts --baseline force the separate kernels everywhere):
//   fused.bn-relu  batch norm with a ReLU on its input (Meso: conv -> ReLU -> BN) or its output
//                  (CNN-5, ResNet: conv -> BN -> ReLU), forward and backward (the NormAct of
//                  shaders/norm.ts; autograd/fused-nn.ts composes or fuses);
//   fused.bce      BCE-with-logits and its mean in one kernel (shaders/fused-loss.ts).
// Fusing only removes passes over memory, never changes the arithmetic's expressions, so both
// candidates agree within float32 rounding (the ReLU-before-BN fusion bit for bit); the static rule
// takes the fused kernel on every adapter: it moves fewer bytes in fewer dispatches.
import { bceMeanKernel, LOSS_UNIFORM } from '../../shaders/fused-loss.js';
import { cachedKernel, log2Class, plan, registerCandidates, registerFamily } from '../plan.js';
import { queue } from '../queue.js';
import { empty, type Tensor } from '../tensor.js';

/** Where the ReLU sits relative to the batch norm. */
export type ReluOrder = 'relu-bn' | 'bn-relu';

export interface BnReluGeom {
  n: number;
  c: number;
  hw: number;
  order: ReluOrder;
  training: boolean;
}

const fusedFirst = <C extends { variant: string }>(cands: readonly C[]) => cands.find((c) => c.variant === 'fused') ?? cands[0];

registerFamily<BnReluGeom>({
  family: 'fused.bn-relu',
  about: 'batch norm with the ReLU before or after it: one set of BN kernels applying the ReLU and its mask, or separate ReLU kernels',
  shapeClass: (g) => `${g.order} ${g.training ? 'train' : 'eval'}`,
  defaultRule: (_g, _dev, cands) => fusedFirst(cands),
  describe: (g) => `${g.order} n${g.n} c${g.c} hw${g.hw}${g.training ? '' : ' eval'}`,
});
registerCandidates<BnReluGeom>('fused.bn-relu', [{ variant: 'fused' }, { variant: 'unfused' }]);

/** Whether batch norm and its ReLU run fused for this geometry (the planner's choice). */
export function fuseBnRelu(g: BnReluGeom): boolean {
  return plan<BnReluGeom>('fused.bn-relu', g).variant === 'fused';
}

export interface LossGeom {
  n: number;
}

/** Most logits the one-workgroup loss kernel takes (beyond, the unfused reduction spreads the sum). */
export const FUSED_LOSS_MAX = 1 << 16;

registerFamily<LossGeom>({
  family: 'fused.bce',
  about: 'BCE-with-logits: the per-element loss, its sum and the mean in one workgroup, or a map, a reduction and a scale',
  shapeClass: (g) => `n2^${log2Class(g.n)}`,
  defaultRule: (_g, _dev, cands) => fusedFirst(cands),
});
registerCandidates<LossGeom>('fused.bce', [{ variant: 'fused', suits: (g) => g.n <= FUSED_LOSS_MAX }, { variant: 'unfused' }]);

/** Whether BCE-with-logits of n logits runs as one fused kernel (the planner's choice). */
export function fuseBce(n: number): boolean {
  return plan<LossGeom>('fused.bce', { n }).variant === 'fused';
}

/** Mean BCE-with-logits of logits against 0/1 targets of the same size: a scalar tensor [1]. */
export function bceWithLogitsMean(logits: Tensor, target: Tensor): Tensor {
  if (logits.dtype !== 'f32' || target.dtype !== 'f32') throw new Error(`bce_with_logits: logits and targets must be f32, got ${logits.dtype} and ${target.dtype}`);
  if (logits.size !== target.size) throw new Error(`bce_with_logits: ${logits.size} logits and ${target.size} targets differ`);
  if (logits.size > FUSED_LOSS_MAX) throw new Error(`bce_with_logits: the fused loss takes at most ${FUSED_LOSS_MAX} logits, got ${logits.size}`);
  const out = empty([]);
  const n = logits.size;
  const k = cachedKernel('fused|bce-mean', bceMeanKernel);
  queue.dispatch(k, [{ buffer: logits.buf }, { buffer: target.buf }, { buffer: out.buf }], LOSS_UNIFORM.pack({ n, scale: n ? 1 / n : NaN }), [1, 1, 1], () => ({
    op: 'loss.bce',
    variant: 'fused',
    shape: `${n}`,
    flops: 8 * n,
  }));
  return out;
}

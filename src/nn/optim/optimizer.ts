// Optimizers over a model's parameters, with fused WGSL updates (src/shaders/optim.ts) and optional
// 0/1 masks per parameter: the pruning contract is that masked weights and their state stay exactly 0.
import type { OptimKind } from '../../shaders/optim.js';

/** The optimizers by name: 'sgd', 'adam' or 'adamw'. */
export type OptimizerName = OptimKind;
import { applyMaskInPlace, optimStep } from '../../tensor/ops/optim.js';
import { keep, type Tensor } from '../../tensor/tensor.js';
import { fill } from '../../tensor/ops/map.js';

export interface OptimizerConfig {
  kind: OptimKind;
  lr: number;
  weightDecay?: number;
  /** SGD momentum, Adam beta1. */
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  betas?: [number, number];
  eps?: number;
}

interface Slot {
  param: Tensor;
  s1: Tensor;
  s2: Tensor;
}

export { applyMaskInPlace };

export class Optimizer {
  private slots: Slot[];
  /** Steps taken since construction or the last reset(). */
  stepCount = 0;
  lr: number;
  readonly cfg: Required<Omit<OptimizerConfig, 'betas'>> & { betas: [number, number] };
  /** Per-parameter masks (by tensor id); set by pruning. */
  private masks = new Map<number, Tensor>();

  constructor(
    params: readonly Tensor[],
    cfg: OptimizerConfig,
    /** Parameter keys, for checkpoints of the optimizer state (defaults to indices). */
    readonly names: readonly string[] = params.map((_, i) => String(i)),
  ) {
    if (!(cfg.lr > 0)) throw new Error(`learning rate ${cfg.lr} must be positive`);
    this.cfg = {
      kind: cfg.kind,
      lr: cfg.lr,
      weightDecay: cfg.weightDecay ?? 0,
      momentum: cfg.momentum ?? 0,
      dampening: cfg.dampening ?? 0,
      nesterov: cfg.nesterov ?? false,
      betas: cfg.betas ?? [0.9, 0.999],
      eps: cfg.eps ?? 1e-8,
    };
    if (this.cfg.nesterov && (this.cfg.momentum <= 0 || this.cfg.dampening !== 0)) {
      throw new Error('Nesterov momentum needs momentum > 0 and dampening 0');
    }
    this.lr = cfg.lr;
    this.slots = params.map((param) => ({ param, s1: keep(fill(param.shape, 0)), s2: keep(fill(param.shape, 0)) }));
  }

  /** Attaches (or clears, with null) the 0/1 mask of a parameter, zeroing masked weights and state now. */
  setMask(param: Tensor, mask: Tensor | null): void {
    const slot = this.slots.find((s) => s.param === param);
    if (!slot) throw new Error(`setMask: ${param} is not optimised by this optimizer`);
    if (!mask) {
      this.masks.delete(param.id);
      return;
    }
    if (mask.size !== param.size) throw new Error(`setMask: mask has ${mask.size} elements, ${param} has ${param.size}`);
    this.masks.set(param.id, mask);
    applyMaskInPlace(param, mask);
    applyMaskInPlace(slot.s1, mask);
    applyMaskInPlace(slot.s2, mask);
  }

  /** One update of every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    const c = this.cfg;
    const t = this.stepCount;
    const [b1, b2] = c.kind === 'sgd' ? [c.momentum, c.dampening] : c.betas;
    const bc1 = c.kind === 'sgd' ? 1 : 1 - b1 ** t;
    const bc2 = c.kind === 'sgd' ? 1 : 1 - b2 ** t;
    this.slots.forEach((s, i) => {
      const g = s.param.grad;
      if (!g) return;
      const mask = this.masks.get(s.param.id);
      // Profiles book the update under the parameter's layer ('layer1.0.conv1' of 'layer1.0.conv1.weight').
      const name = this.names[i];
      const tag = () => ({
        op: `optim.${c.kind}`,
        variant: mask ? 'masked' : 'dense',
        shape: `${s.param.size}`,
        phase: 'optimizer' as const,
        layer: name.includes('.') ? name.slice(0, name.lastIndexOf('.')) : name,
      });
      const hyper = { kind: c.kind, step: t, lr: this.lr, weightDecay: c.weightDecay, b1, b2, eps: c.eps, bc1, bc2, nesterov: c.nesterov };
      optimStep(hyper, s.param, g, s.s1, s.s2, mask, tag);
    });
  }

  zeroGrad(): void {
    for (const s of this.slots) {
      s.param.grad?.dispose();
      s.param.grad = null;
    }
  }

  /** Clears all state (moments, momentum, step count): each IMP level starts a fresh optimizer state. */
  reset(): void {
    for (const s of this.slots) {
      s.s1.dispose();
      s.s2.dispose();
      s.s1 = keep(fill(s.param.shape, 0));
      s.s2 = keep(fill(s.param.shape, 0));
      const m = this.masks.get(s.param.id);
      if (m) applyMaskInPlace(s.param, m);
    }
    this.stepCount = 0;
  }

  /** The state tensors of a parameter (tests check that masked entries stay zero). */
  stateOf(param: Tensor): { s1: Tensor; s2: Tensor } {
    const slot = this.slots.find((s) => s.param === param);
    if (!slot) throw new Error(`stateOf: ${param} is not optimised by this optimizer`);
    return { s1: slot.s1, s2: slot.s2 };
  }

  /** State tensors by `<param key>.exp_avg` / `.exp_avg_sq` (Adam) or `.momentum_buffer` (SGD). */
  namedState(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    this.slots.forEach((s, i) => {
      const k = this.names[i];
      if (this.cfg.kind === 'sgd') out.push([`${k}.momentum_buffer`, s.s1]);
      else out.push([`${k}.exp_avg`, s.s1], [`${k}.exp_avg_sq`, s.s2]);
    });
    return out;
  }

  dispose(): void {
    for (const s of this.slots) {
      s.s1.dispose();
      s.s2.dispose();
    }
    this.slots = [];
  }
}

export const sgd = (params: readonly Tensor[], o: Omit<OptimizerConfig, 'kind'>) => new Optimizer(params, { ...o, kind: 'sgd' });
export const adam = (params: readonly Tensor[], o: Omit<OptimizerConfig, 'kind'>) => new Optimizer(params, { ...o, kind: 'adam' });
export const adamw = (params: readonly Tensor[], o: Omit<OptimizerConfig, 'kind'>) => new Optimizer(params, { ...o, kind: 'adamw' });

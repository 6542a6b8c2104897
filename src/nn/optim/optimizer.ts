// Optimizers over a model's parameters, with fused WGSL updates (src/shaders/optim.ts) and optional
// 0/1 masks per parameter: the pruning contract is that masked weights and their state stay exactly 0.
//
// Storage: the optimizer keeps what it updates in three arenas (tensor/arena.ts), so the planner's
// 'multi' kernel updates every parameter of a step in one dispatch (a few where the adapter binds few
// buffers): the parameters themselves (moved into the first arena when the optimizer is made; each
// keeps its identity, shape and name, so models, state dicts and checkpoints see the same tensors),
// both moments of each (the second arena: views with full shapes, saved under PyTorch's names), and
// the masks (the third, made on the first setMask: each mask is copied there, at the offset of its
// parameter). The per-tensor kernels run on the same views.
import type { OptimKind } from '../../shaders/optim.js';

/** The optimizers by name: 'sgd', 'adam' or 'adamw'. */
export type OptimizerName = OptimKind;
import { applyMaskInPlace, optimStepList, type OptimSegment } from '../../tensor/ops/optim.js';
import { Arena, arenaLayout } from '../../tensor/arena.js';
import type { Tensor } from '../../tensor/tensor.js';
import { mapRaw } from '../../tensor/ops/map.js';

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

/** A parameter's own hyper-parameters (torch's parameter groups): weight decay, and a factor on the step's lr. */
export interface ParamOptions {
  weightDecay?: number;
  /** The parameter's lr is lrScale * the optimizer's lr (which the schedule sets each step). */
  lrScale?: number;
}

interface Slot {
  param: Tensor;
  /** Element offset of the parameter in the weight arena (its mask has the same in the mask arena). */
  at: number;
  s1: Tensor;
  s2: Tensor;
  /** This parameter's copy of its mask in the mask arena. */
  mask: Tensor | null;
  opts: ParamOptions;
}

export { applyMaskInPlace };

export class Optimizer {
  private slots: Slot[];
  /** Steps taken since construction or the last reset(). */
  stepCount = 0;
  lr: number;
  readonly cfg: Required<Omit<OptimizerConfig, 'betas'>> & { betas: [number, number] };
  private readonly weights: Arena;
  private readonly states: Arena;
  private masks: Arena | null = null;
  private disposed = false;

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
    // Arena order: smallest first, so the tensors a multi-tensor dispatch shares (on software adapters
    // only the small ones) sit together and its bound ranges cover little else.
    const order = params.map((_, i) => i).sort((a, b) => params[a].size - params[b].size || a - b);
    const w = arenaLayout(order.map((i) => params[i].size));
    const st = arenaLayout(order.flatMap((i) => [params[i].size, params[i].size]));
    const rank = new Map(order.map((i, r) => [i, r]));
    this.weights = new Arena(w.total);
    this.states = new Arena(st.total);
    this.slots = params.map((param, i) => {
      if (params.indexOf(param) !== i) throw new Error(`Optimizer: ${param} is listed twice`);
      const r = rank.get(i)!;
      this.weights.adopt(param, w.offsets[r]);
      return { param, at: w.offsets[r], s1: this.states.view(st.offsets[2 * r], param.shape), s2: this.states.view(st.offsets[2 * r + 1], param.shape), mask: null, opts: {} };
    });
  }

  private slotOf(param: Tensor, what: string): Slot {
    const slot = this.slots.find((s) => s.param === param);
    if (!slot) throw new Error(`${what}: ${param} is not optimised by this optimizer`);
    return slot;
  }

  /** Gives a parameter its own weight decay and lr factor (torch's parameter groups); {} restores the optimizer's. */
  setParamOptions(param: Tensor, o: ParamOptions): void {
    if (o.lrScale !== undefined && !(o.lrScale >= 0)) throw new Error(`setParamOptions: lrScale ${o.lrScale} must be >= 0`);
    this.slotOf(param, 'setParamOptions').opts = { ...o };
  }

  /** Attaches (or clears, with null) the 0/1 mask of a parameter, zeroing masked weights and state now. */
  /**
   * Attaches (or clears, with null) the 0/1 mask of a parameter, zeroing masked weights and state
   * now. The optimizer keeps a copy of the mask: a later change to `mask` needs another setMask.
   */
  setMask(param: Tensor, mask: Tensor | null): void {
    const slot = this.slotOf(param, 'setMask');
    slot.mask?.dispose();
    slot.mask = null;
    if (!mask) return;
    if (mask.size !== param.size) throw new Error(`setMask: mask has ${mask.size} elements, ${param} has ${param.size}`);
    this.masks ??= new Arena(this.weights.elements);
    slot.mask = this.masks.view(slot.at, param.shape);
    mapRaw('copy', 'x0', [{ t: mask }], param.shape, 'f32', 0, 0, slot.mask);
    applyMaskInPlace(param, slot.mask);
    applyMaskInPlace(slot.s1, slot.mask);
    applyMaskInPlace(slot.s2, slot.mask);
  }

  /** One update of every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    const c = this.cfg;
    const t = this.stepCount;
    const [b1, b2] = c.kind === 'sgd' ? [c.momentum, c.dampening] : c.betas;
    const bc1 = c.kind === 'sgd' ? 1 : 1 - b1 ** t;
    const bc2 = c.kind === 'sgd' ? 1 : 1 - b2 ** t;
    const segs: OptimSegment[] = [];
    this.slots.forEach((s, i) => {
      const g = s.param.grad;
      if (!g) return;
      // Something moved the parameter out of the arena (another optimizer over the same tensors): back in.
      if (!this.weights.holds(s.param) || this.weights.offsetOf(s.param) !== s.at) this.weights.adopt(s.param, s.at);
      const mask = s.mask ?? undefined;
      // Profiles book a per-tensor update under the parameter's layer ('layer1.0.conv1' of 'layer1.0.conv1.weight').
      const name = this.names[i];
      const tag = () => ({
        op: `optim.${c.kind}`,
        variant: mask ? 'masked' : 'dense',
        shape: `${s.param.size}`,
        phase: 'optimizer' as const,
        layer: name.includes('.') ? name.slice(0, name.lastIndexOf('.')) : name,
      });
      const lr = s.opts.lrScale === undefined ? this.lr : this.lr * s.opts.lrScale;
      segs.push({ param: s.param, grad: g, s1: s.s1, s2: s.s2, mask, lr, weightDecay: s.opts.weightDecay ?? c.weightDecay, tag });
    });
    const shared = { kind: c.kind, step: t, b1, b2, eps: c.eps, bc1, bc2, nesterov: c.nesterov };
    optimStepList(shared, segs, { w: this.weights, s: this.states, m: this.masks }, { op: `optim.${c.kind}` });
  }

  zeroGrad(): void {
    for (const s of this.slots) {
      s.param.grad?.dispose();
      s.param.grad = null;
    }
  }

  /** Clears all state (moments, momentum, step count): each IMP level starts a fresh optimizer state. */
  reset(): void {
    // One fill of the whole state arena (a few where it outgrows a binding).
    this.states.zero();
    for (const s of this.slots) if (s.mask) applyMaskInPlace(s.param, s.mask);
    this.stepCount = 0;
  }

  /** The state tensors of a parameter (tests check that masked entries stay zero). */
  stateOf(param: Tensor): { s1: Tensor; s2: Tensor } {
    const slot = this.slotOf(param, 'stateOf');
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

  /** Frees the state and masks; the parameters stay in their arena (it lives while they do). */
  dispose(): void {
    for (const s of this.slots) {
      s.s1.dispose();
      s.s2.dispose();
      s.mask?.dispose();
    }
    if (!this.disposed) {
      this.weights.release();
      this.states.release();
      this.masks?.release();
    }
    this.disposed = true;
    this.slots = [];
  }
}

export const sgd = (params: readonly Tensor[], o: Omit<OptimizerConfig, 'kind'>) => new Optimizer(params, { ...o, kind: 'sgd' });
export const adam = (params: readonly Tensor[], o: Omit<OptimizerConfig, 'kind'>) => new Optimizer(params, { ...o, kind: 'adam' });
export const adamw = (params: readonly Tensor[], o: Omit<OptimizerConfig, 'kind'>) => new Optimizer(params, { ...o, kind: 'adamw' });

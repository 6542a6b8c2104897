// Module / Parameter / state dict, after PyTorch's nn.Module: a tree of named children, each with
// named parameters (trainable tensors) and buffers (running statistics). Names join with '.', so
// state-dict keys are PyTorch's own (`features.0.weight`, `layer1.0.bn1.running_mean`).
//
// Parameters are created uninitialised and filled by initialize(seed): every parameter draws from
// the stream named by its full key, so adding a layer never changes another layer's initial weights.
import { Tensor, empty, keep, type Shape } from '../tensor/tensor.js';
import { writeTensor } from '../tensor/io.js';
import { noGrad } from '../autograd/tape.js';
import { withLayer } from '../tensor/trace.js';

export function parameter(shape: Shape): Tensor {
  const t = keep(empty(shape));
  t.requiresGrad = true;
  return t;
}

export function buffer(shape: Shape): Tensor {
  return keep(empty(shape));
}

/** Host-side tensor data, as read from or written to `.safetensors`. */
export interface HostTensorF32 {
  shape: number[];
  data: Float32Array;
}

/** FNV-1a of a parameter's key: its random stream id. */
export function streamOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Modules whose forward already runs in a name scope. */
const scoped = new WeakSet<object>();

/**
 * Called after a module's forward with its input and output (torch.nn's register_forward_hook): it
 * may observe (a kernel planner reading a layer's input shape) or return a tensor that replaces the
 * output (Grad-CAM turning an activation into a leaf it takes gradients at).
 */
export type ForwardHook = (module: Module, input: Tensor, output: Tensor) => Tensor | void;

/** What registerForwardHook returns: remove() takes the hook off again. */
export interface HookHandle {
  remove(): void;
}

export abstract class Module {
  training = true;
  private readonly params_ = new Map<string, Tensor>();
  private readonly buffers_ = new Map<string, Tensor>();
  private readonly children_ = new Map<string, Module>();

  protected addParameter(name: string, t: Tensor): Tensor {
    this.params_.set(name, t);
    return t;
  }
  protected addBuffer(name: string, t: Tensor): Tensor {
    this.buffers_.set(name, t);
    return t;
  }
  protected addModule<M extends Module>(name: string, m: M): M {
    this.children_.set(name, m);
    // Every child's forward runs inside its name scope, so kernels know their layer
    // ('layer2.0.conv1') for per-layer profiles (src/tensor/trace.ts). Wrapped once per instance.
    if (!scoped.has(m)) {
      scoped.add(m);
      const inner = m.forward;
      m.forward = function (this: M, ...args: unknown[]) {
        return withLayer(name, () => (inner as (...a: unknown[]) => Tensor).apply(m, args));
      } as M['forward'];
    }
    return m;
  }

  abstract forward(x: Tensor): Tensor;

  private hooks_: ForwardHook[] | null = null;

  /**
   * Runs `hook` after every forward of this module, in registration order, until the handle's
   * remove(). A module without hooks pays nothing: its forward is wrapped on the first registration.
   */
  registerForwardHook(hook: ForwardHook): HookHandle {
    if (!this.hooks_) {
      const hooks: ForwardHook[] = (this.hooks_ = []);
      const inner = this.forward;
      this.forward = function (this: Module, x: Tensor, ...rest: unknown[]) {
        let y = (inner as (...a: unknown[]) => Tensor).call(this, x, ...rest);
        for (const h of [...hooks]) y = h(this, x, y) ?? y;
        return y;
      } as this['forward'];
    }
    const hooks = this.hooks_;
    hooks.push(hook);
    return {
      remove: () => {
        const i = hooks.indexOf(hook);
        if (i >= 0) hooks.splice(i, 1);
      },
    };
  }

  /** Whether a forward hook is registered (a fused path that skips this module's forward must not run). */
  hasForwardHooks(): boolean {
    return !!this.hooks_?.length;
  }

  /** Fills this module's own parameters and buffers (not its children's). */
  protected resetParameters(_seed: number, _prefix: string): void {}

  children(): IterableIterator<[string, Module]> {
    return this.children_.entries();
  }

  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [n, c] of this.children_) yield* c.namedModules(prefix ? `${prefix}.${n}` : n);
  }

  *namedParameters(prefix = ''): Generator<[string, Tensor]> {
    for (const [n, t] of this.params_) yield [prefix ? `${prefix}.${n}` : n, t];
    for (const [n, c] of this.children_) yield* c.namedParameters(prefix ? `${prefix}.${n}` : n);
  }

  *namedBuffers(prefix = ''): Generator<[string, Tensor]> {
    for (const [n, t] of this.buffers_) yield [prefix ? `${prefix}.${n}` : n, t];
    for (const [n, c] of this.children_) yield* c.namedBuffers(prefix ? `${prefix}.${n}` : n);
  }

  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, t]) => t);
  }

  /** Trainable element count (PyTorch's sum(p.numel() for p in model.parameters())). */
  parameterCount(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }

  /** Deterministic initialisation of every parameter and buffer from one seed. */
  initialize(seed: number): this {
    noGrad(() => {
      for (const [name, m] of this.namedModules()) m.resetParameters(seed, name);
    });
    return this;
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /**
   * Each module's parameters then its buffers, module by module, by PyTorch key (the order of
   * torch's state_dict()). The tensors are the live ones (no copy).
   */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [name, m] of this.namedModules()) {
      const pre = name ? `${name}.` : '';
      for (const [k, t] of m.params_) out.set(pre + k, t);
      for (const [k, t] of m.buffers_) out.set(pre + k, t);
    }
    return out;
  }

  /** Host copies of the state dict, for saving. */
  async stateDictHost(): Promise<Map<string, HostTensorF32>> {
    const out = new Map<string, HostTensorF32>();
    for (const [k, t] of this.stateDict()) out.set(k, { shape: [...t.shape], data: (await t.toArray()) as Float32Array });
    return out;
  }

  /**
   * Copies host tensors into the live parameters and buffers. strict: every key must be present on
   * both sides and shapes must match; errors name the key. Extra keys PyTorch keeps but we do not
   * model (`num_batches_tracked`) are ignored.
   */
  loadStateDict(state: ReadonlyMap<string, HostTensorF32>, strict = true): void {
    const mine = this.stateDict();
    // Check everything before writing anything: a bad file must not leave the model half-loaded.
    const writes: [Tensor, Float32Array][] = [];
    for (const [k, t] of mine) {
      const src = state.get(k);
      if (!src) {
        if (strict) throw new Error(`state dict is missing '${k}'`);
        continue;
      }
      if (src.shape.length !== t.shape.length || src.shape.some((d, i) => d !== t.shape[i])) {
        throw new Error(`state dict '${k}' has shape [${src.shape.join(', ')}], model expects [${t.shape.join(', ')}]`);
      }
      writes.push([t, src.data]);
    }
    if (strict) {
      for (const k of state.keys()) {
        if (!mine.has(k) && !k.endsWith('num_batches_tracked')) throw new Error(`state dict has unexpected key '${k}'`);
      }
    }
    for (const [t, data] of writes) writeTensor(t, data);
  }

  /** Releases every parameter and buffer. */
  dispose(): void {
    for (const [, t] of this.stateDict()) t.dispose();
  }
}

/** Modules applied in order; children are named 0, 1, 2, ... like torch.nn.Sequential. */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => this.addModule(String(i), l));
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const l of this.layers) y = l.forward(y);
    return y;
  }
}

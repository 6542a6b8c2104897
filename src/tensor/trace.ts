// Who is dispatching: the layer (qualified module name, e.g. 'layer2.0.conv1') and the phase of the
// step (forward / input-grad / weight-grad / optimizer). Modules push their name around their forward,
// autograd restores a node's layer while running its backward rule, optimizers set the optimizer
// phase. The queue stamps every dispatch with the current layer and phase while profiling, so a
// profile is a table per layer and phase rather than per kernel name.
//
// Launchers describe their dispatch with a DispatchTag (op, planner variant, shape, dense FLOPs),
// passed as queue.dispatch's last argument; untagged dispatches are profiled under the kernel name.

export type Phase = 'forward' | 'input-grad' | 'weight-grad' | 'optimizer' | 'other';

/** A tag, or a function making it: built only while profiling, so untimed steps pay nothing. */
export type DispatchTagArg = DispatchTag | (() => DispatchTag);

export interface DispatchTag {
  /** Op family or op name ('conv.fwd', 'matmul', 'bn.apply', ...). */
  op: string;
  /** Planner candidate id (or the kernel's name). */
  variant?: string;
  /** Shape summary, e.g. 'N32 C3->8 64x64 k3 s1'. */
  shape?: string;
  /** Dense floating-point operations of the dispatch (for nominal GFLOP/s). */
  flops?: number;
  /** Phase to book the dispatch under whatever the current one (weight-gradient kernels). */
  phase?: Phase;
  /** Layer to book it under instead of the scope's (the optimizer, which updates every layer). */
  layer?: string;
}

const layers: string[] = [];
let phase: Phase = 'forward';

/** Enters a layer scope: names join with '.', so nested modules give 'layer2.0.conv1'. */
export function pushLayer(name: string): void {
  const top = layers[layers.length - 1];
  layers.push(top && name ? `${top}.${name}` : top || name);
}

export function popLayer(): void {
  layers.pop();
}

/** The qualified name of the innermost layer ('' outside every module). */
export function currentLayer(): string {
  return layers[layers.length - 1] ?? '';
}

/** Runs fn inside a layer scope (the name is appended to the enclosing one). */
export function withLayer<T>(name: string, fn: () => T): T {
  pushLayer(name);
  try {
    return fn();
  } finally {
    popLayer();
  }
}

/** Runs fn with the layer stack replaced by one fully qualified name (autograd's backward). */
export function atLayer<T>(qualified: string, fn: () => T): T {
  const saved = layers.splice(0);
  if (qualified) layers.push(qualified);
  try {
    return fn();
  } finally {
    layers.splice(0, layers.length, ...saved);
  }
}

export function currentPhase(): Phase {
  return phase;
}

/** Runs fn in a phase, restoring the previous one after. */
export function withPhase<T>(p: Phase, fn: () => T): T {
  const saved = phase;
  phase = p;
  try {
    return fn();
  } finally {
    phase = saved;
  }
}

/** Sets the phase until changed (loops that cannot wrap a callback). */
export function setPhase(p: Phase): void {
  phase = p;
}

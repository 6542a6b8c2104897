// Reverse-mode autograd in the micrograd style, over GPU tensors.
//
// Each differentiable op that sees an input requiring grad records a Node on its output: the inputs,
// a backward rule (output grad -> input grads), and tensors it saved only for backward ("owned").
// backward() walks the graph in reverse topological order. What it frees as it goes: each node's
// output gradient once the node has consumed it, and the node's owned tensors. Activations belong to
// whoever made them (usually a tidy() scope around the training step).
import { keep, Tensor, type GradNode } from '../tensor/tensor.js';
import { binary, fill } from '../tensor/ops/map.js';
import { atLayer, currentLayer, withPhase } from '../tensor/trace.js';
import { onDeviceClose } from '../tensor/device.js';

export type BackwardRule = (grad: Tensor) => readonly (Tensor | null | undefined)[];

export class Node implements GradNode {
  constructor(
    readonly name: string,
    readonly inputs: readonly Tensor[],
    readonly rule: BackwardRule,
    /** Tensors saved only for backward; disposed after the rule has run. */
    readonly owned: Tensor[],
    /** The module that recorded it: its backward kernels are profiled under the same layer. */
    readonly layer: string = currentLayer(),
  ) {}
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn with gradient recording off (evaluation, weight updates, pruning). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function needsGrad(...xs: readonly Tensor[]): boolean {
  return gradEnabled && xs.some((x) => x.requiresGrad);
}

/**
 * Attaches a backward rule to `out` when any input requires grad; otherwise disposes the owned
 * tensors at once (nothing will need them). Returns `out`.
 */
export function record(name: string, out: Tensor, inputs: readonly Tensor[], rule: BackwardRule, owned: Tensor[] = []): Tensor {
  if (needsGrad(...inputs)) {
    out.requiresGrad = true;
    out.gradNode = new Node(name, inputs, rule, owned);
  } else {
    for (const t of owned) t.dispose();
  }
  return out;
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<number>();
  // Iterative DFS: deep nets (ResNet-18 with its many ops) would overflow a recursive one.
  const stack: { t: Tensor; i: number }[] = [{ t: root, i: 0 }];
  seen.add(root.id);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const node = top.t.gradNode as Node | null;
    if (node && top.i < node.inputs.length) {
      const next = node.inputs[top.i++];
      if (next.requiresGrad && !seen.has(next.id)) {
        seen.add(next.id);
        stack.push({ t: next, i: 0 });
      }
    } else {
      order.push(top.t);
      stack.pop();
    }
  }
  return order.reverse();
}

export interface BackwardOptions {
  /** Keep the graph (and owned tensors) for a second backward. */
  retainGraph?: boolean;
}

/**
 * Accumulates d(root)/d(leaf) into leaf.grad for every leaf that requires grad. `grad` defaults to
 * ones for a one-element root (a loss). Leaf grads are exempt from tidy() scopes: owners dispose them
 * (optimizer.zeroGrad()).
 */
export function backward(root: Tensor, grad?: Tensor, o: BackwardOptions = {}): void {
  withPhase('input-grad', () => backwardPass(root, grad, o));
}

function backwardPass(root: Tensor, grad: Tensor | undefined, o: BackwardOptions): void {
  if (!root.requiresGrad) throw new Error(`backward(): ${root} does not require grad`);
  if (!grad && root.size !== 1) throw new Error(`backward(): ${root} is not a scalar; pass its gradient`);
  if (grad && grad.size !== root.size) throw new Error(`backward(): grad [${grad.shape.join(', ')}] does not match ${root}`);
  const order = topoOrder(root);
  const grads = new Map<number, Tensor>();
  grads.set(root.id, grad ? grad.reshape(root.shape) : onesLike(root));
  for (const t of order) {
    const g = grads.get(t.id);
    const node = t.gradNode as Node | null;
    if (!g) continue;
    if (!node) {
      // A leaf: accumulate into .grad.
      grads.delete(t.id);
      if (t.grad) {
        const sum = withPhase('weight-grad', () => binary('add', t.grad!, g));
        t.grad.dispose();
        g.dispose();
        t.grad = keep(sum);
      } else {
        t.grad = keep(g);
      }
      continue;
    }
    const ins = atLayer(node.layer, () => node.rule(g));
    if (ins.length !== node.inputs.length) throw new Error(`backward of ${node.name}: ${ins.length} grads for ${node.inputs.length} inputs`);
    for (let k = 0; k < ins.length; k++) {
      let gi = ins[k];
      const x = node.inputs[k];
      if (!gi || !x.requiresGrad) {
        if (gi && gi !== g) gi.dispose();
        continue;
      }
      if (gi.size !== x.size) throw new Error(`backward of ${node.name}: grad [${gi.shape.join(', ')}] for input [${x.shape.join(', ')}]`);
      // Rules may pass their incoming grad through; a view keeps the storage alive after g is freed.
      if (gi === g || ins.indexOf(gi) !== k) gi = gi.reshape(x.shape);
      else if (gi.shape.length !== x.shape.length || gi.shape.some((d, i) => d !== x.shape[i])) {
        const v = gi.reshape(x.shape);
        gi.dispose();
        gi = v;
      }
      keep(gi);
      const prev = grads.get(x.id);
      if (prev) {
        const sum = keep(binary('add', prev, gi));
        prev.dispose();
        gi.dispose();
        grads.set(x.id, sum);
      } else grads.set(x.id, gi);
    }
    grads.delete(t.id);
    g.dispose();
    if (!o.retainGraph) {
      for (const s of node.owned) s.dispose();
      t.gradNode = null;
    }
  }
  for (const g of grads.values()) g.dispose();
}

// The seed gradient of a scalar loss, made once per device: a fill kernel per backward was one
// dispatch of every training step. Backward rules never write into the gradient they are given, so
// each backward takes a view of the same 1.
let one: Tensor | null = null;
onDeviceClose(() => {
  one = null;
});

function onesLike(t: Tensor): Tensor {
  if (t.size !== 1) return keep(fill(t.shape, 1));
  one ??= keep(fill([1], 1));
  return keep(one.reshape(t.shape));
}

// Mask invariants as pure functions over host arrays: each returns the FIRST offence (tensor, index,
// what is wrong) or null. `ticketlab check` (check.ts) runs them over the files of a run folder, and
// `ticketlab/testing` wraps them as property helpers, so the CLI, the library and our own tests share
// one definition of every invariant.
import { keepCountFor, pruneCount, type Scope } from './magnitude.js';

/** Masks or weights by key: `conv1.weight` -> values (0/1 for masks). */
export type TensorsByKey = ReadonlyMap<string, ArrayLike<number>>;

/** Where an invariant first fails: the tensor, the flat element index (-1: the tensor as a whole), why. */
export interface Offence {
  tensor: string;
  index: number;
  message: string;
}

/** `<layer>.weight_mask` entries of a state dict (torch.nn.utils.prune's names), keyed by the weight they mask. */
export function masksIn<T>(tensors: ReadonlyMap<string, T>): Map<string, T> {
  return new Map([...tensors].filter(([k]) => k.endsWith('_mask')).map(([k, v]) => [k.slice(0, -'_mask'.length), v]));
}

/** Orders level files naturally: level_2 before level_10. */
export function naturalOrder(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

function keptOf(m: ArrayLike<number>): number {
  let k = 0;
  for (let i = 0; i < m.length; i++) if (m[i] !== 0) k++;
  return k;
}

/** A mask entry that is not exactly 0 or 1 (NaN, 0.5, -0 are all offences; -0 is not a 0/1 bit). */
export function firstNonBinary(masks: TensorsByKey): Offence | null {
  for (const [key, m] of masks) {
    for (let i = 0; i < m.length; i++) {
      const v = m[i];
      if (!(Object.is(v, 0) || v === 1)) return { tensor: key, index: i, message: `holds ${Object.is(v, -0) ? '-0' : v}; masks are 0/1` };
    }
  }
  return null;
}

/** An entry kept in `next` but pruned in `prev` (pruned weights never return), or a layer that changed shape. */
export function firstGrown(prev: TensorsByKey, next: TensorsByKey): Offence | null {
  for (const [key, m] of next) {
    const p = prev.get(key);
    if (!p) return { tensor: key, index: -1, message: 'has no mask at the previous level' };
    if (p.length !== m.length) return { tensor: key, index: -1, message: `has ${m.length} entries, ${p.length} at the previous level` };
    for (let i = 0; i < m.length; i++) if (m[i] !== 0 && p[i] === 0) return { tensor: key, index: i, message: 'is kept but was pruned at the previous level (a pruned weight came back)' };
  }
  for (const key of prev.keys()) if (!next.has(key)) return { tensor: key, index: -1, message: 'has a mask at the previous level but none here' };
  return null;
}

/**
 * A pruned entry (mask 0) whose value in `values` is not exactly +0. `values` may hold more tensors
 * than `masks`; `valueKey` maps a mask key to the value key (e.g. `optimizer.<key>.exp_avg`).
 * `negativeZero` accepts -0 too: PyTorch's pruned weight is `weight_orig * mask`, which is -0 wherever
 * the original value was negative, so a torch `.weight` holds both signs of zero by construction.
 */
export function firstNonZeroPruned(masks: TensorsByKey, values: TensorsByKey, valueKey: (key: string) => string = (k) => k, o: { negativeZero?: boolean } = {}): Offence | null {
  const zero = o.negativeZero ? (v: number) => v === 0 : (v: number) => Object.is(v, 0);
  for (const [key, m] of masks) {
    const vk = valueKey(key);
    const w = values.get(vk);
    if (!w) continue;
    if (w.length !== m.length) return { tensor: vk, index: -1, message: `has ${w.length} entries, its mask ${m.length}` };
    for (let i = 0; i < m.length; i++) {
      if (m[i] === 0 && !zero(w[i])) return { tensor: vk, index: i, message: `= ${Object.is(w[i], -0) ? '-0' : w[i]} but is pruned (must be exactly ${o.negativeZero ? '0' : '+0'})` };
    }
  }
  return null;
}

/** Per-layer kept counts of masks. */
export function keptCounts(masks: TensorsByKey): Map<string, { total: number; kept: number }> {
  return new Map([...masks].map(([k, m]) => [k, { total: m.length, kept: keptOf(m) }]));
}

/**
 * The kept counts a pruning step must leave: a global total, or one count per layer. `slack` allows
 * that far off (structured pruning meets a count in weights with whole units: structure.ts).
 */
export type KeptTarget =
  | { scope: 'global'; kept: number; why: string; slack?: number }
  | { scope: 'layer'; kept: ReadonlyMap<string, number>; why: string; slack?: ReadonlyMap<string, number> };

/** A mask whose kept count differs from the target (globally: the total, reported on the whole set). */
export function firstCountOffTarget(masks: TensorsByKey, target: KeptTarget): Offence | null {
  const counts = keptCounts(masks);
  if (target.scope === 'global') {
    const kept = [...counts.values()].reduce((s, c) => s + c.kept, 0);
    return Math.abs(kept - target.kept) <= (target.slack ?? 0) ? null : { tensor: '(all layers)', index: -1, message: `keep ${kept} weights, ${target.why} says ${target.kept}` };
  }
  for (const [key, c] of counts) {
    const want = target.kept.get(key);
    if (want === undefined) return { tensor: key, index: -1, message: `has no target count (${target.why})` };
    if (Math.abs(c.kept - want) > (target.slack?.get(key) ?? 0)) return { tensor: key, index: -1, message: `keeps ${c.kept} weights, ${target.why} says ${want}` };
  }
  return null;
}

/**
 * How a pruning count `remaining * rate` is rounded: ticketlab rounds halves up (magnitude.ts
 * pruneCount); PyTorch's torch.nn.utils.prune uses Python's round(), which sends halves to even.
 */
export type Rounding = 'half-up' | 'half-even';

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/** Target after one IMP round at `rate` from the previous level's masks (pruneByRate's rounding by default). */
export function targetAfterRound(prev: TensorsByKey, rate: number, scope: Scope, rounding: Rounding = 'half-up'): KeptTarget {
  pruneCount(0, rate); // validates the rate
  const count = (n: number) => (rounding === 'half-up' ? pruneCount(n, rate) : roundHalfEven(n * rate));
  const counts = keptCounts(prev);
  const why = `pruning ${rate} of the previous level's ${scope === 'global' ? 'remaining weights' : 'remaining weights per layer'}`;
  if (scope === 'global') {
    const kept = [...counts.values()].reduce((s, c) => s + c.kept, 0);
    return { scope, kept: kept - count(kept), why };
  }
  return { scope, kept: new Map([...counts].map(([k, c]) => [k, c.kept - count(c.kept)])), why };
}

/** Target for a sparsity of the prunable weights (pruneToSparsity's rounding): overall or per layer. */
export function targetForSparsity(masks: TensorsByKey, sparsity: number, scope: Scope): KeptTarget {
  const why = `sparsity ${sparsity} ${scope === 'global' ? 'overall' : 'per layer'}`;
  if (scope === 'global') {
    const total = [...masks.values()].reduce((s, m) => s + m.length, 0);
    return { scope, kept: keepCountFor(total, sparsity), why };
  }
  return { scope, kept: new Map([...masks].map(([k, m]) => [k, keepCountFor(m.length, sparsity)])), why };
}

/** Per-layer kept counts of `like` as a target (random-pruning controls keep the ticket's counts). */
export function targetLike(like: TensorsByKey, why: string): KeptTarget {
  return { scope: 'layer', kept: new Map([...keptCounts(like)].map(([k, c]) => [k, c.kept])), why };
}

/** The first entry where two masks differ (reinit controls share the ticket's mask; one-shot vs IMP). */
export function firstMaskDifference(a: TensorsByKey, b: TensorsByKey): Offence | null {
  for (const [key, m] of a) {
    const o = b.get(key);
    if (!o) return { tensor: key, index: -1, message: 'is missing from the other mask' };
    if (o.length !== m.length) return { tensor: key, index: -1, message: `has ${m.length} entries, the other mask ${o.length}` };
    for (let i = 0; i < m.length; i++) if ((m[i] !== 0) !== (o[i] !== 0)) return { tensor: key, index: i, message: `is ${m[i] !== 0 ? 1 : 0} here, ${o[i] !== 0 ? 1 : 0} in the other mask` };
  }
  for (const key of b.keys()) if (!a.has(key)) return { tensor: key, index: -1, message: 'is only in the other mask' };
  return null;
}

/**
 * A tensor of `start` that differs from the rewind point: bit-for-bit (so -0 != +0 and NaN == NaN),
 * only at kept entries for masked weights, everywhere for the rest (biases, batch norm).
 */
export function firstStartMismatch(masks: TensorsByKey, start: TensorsByKey, rewind: TensorsByKey): Offence | null {
  for (const [key, r] of rewind) {
    const s = start.get(key);
    if (!s) return { tensor: key, index: -1, message: 'is in the rewind point but not in the start weights' };
    if (s.length !== r.length) return { tensor: key, index: -1, message: `has ${s.length} entries, ${r.length} in the rewind point` };
    const m = masks.get(key);
    for (let i = 0; i < r.length; i++) {
      if (m && m[i] === 0) continue;
      if (!Object.is(s[i], r[i])) return { tensor: key, index: i, message: `starts at ${s[i]}, the rewind point holds ${r[i]}` };
    }
  }
  return null;
}

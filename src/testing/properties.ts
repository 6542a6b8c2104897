// Property helpers: each returns true when its invariant holds and throws an InvariantViolation naming
// the first offending tensor and index otherwise, so it can be a fast-check predicate's result
// (`fc.property(arb, (x) => masksMonotone(a, b))`) and the failure report says where. They are the
// invariants `ticketlab check` runs on files (prune/invariants.ts), on in-memory masks.
import type { Scope, Scores } from '../prune/magnitude.js';
import {
  firstCountOffTarget,
  firstGrown,
  firstMaskDifference,
  firstNonBinary,
  firstNonZeroPruned,
  targetAfterRound,
  targetForSparsity,
  targetLike,
  type Offence,
  type TensorsByKey,
} from '../prune/invariants.js';
import { firstUnstructured, withUnitSlack, type Shapes } from '../prune/structure.js';
import type { Granularity } from '../prune/granularity.js';

export class InvariantViolation extends Error {
  constructor(
    readonly invariant: string,
    readonly offence: Offence,
  ) {
    super(`${invariant}: ${offence.tensor}${offence.index >= 0 ? `[${offence.index}]` : ''} ${offence.message}`);
    this.name = 'InvariantViolation';
  }
}

function hold(invariant: string, o: Offence | null): true {
  if (o) throw new InvariantViolation(invariant, o);
  return true;
}

/** Every mask entry is exactly 0 or 1. */
export function masksBinary(masks: TensorsByKey): true {
  return hold('masksBinary', firstNonBinary(masks));
}

/** `next` keeps nothing `prev` pruned (pruned weights never return) and has the same layers and sizes. */
export function masksMonotone(prev: TensorsByKey, next: TensorsByKey): true {
  return hold('masksMonotone', firstGrown(prev, next));
}

/** Every pruned entry of `weights` (or of any tensor keyed like the masks, e.g. optimizer state) is exactly +0. */
export function prunedStayZero(masks: TensorsByKey, weights: TensorsByKey): true {
  return hold('prunedStayZero', firstNonZeroPruned(masks, weights));
}

/**
 * Kept counts are exactly those of sparsity `s`: total - round(total * s) over all layers (global) or
 * in each layer (layer), ticketlab's rounding (magnitude.ts keepCountFor).
 */
export function exactSparsity(masks: TensorsByKey, sparsity: number, scope: Scope): true {
  return hold('exactSparsity', firstCountOffTarget(masks, targetForSparsity(masks, sparsity, scope)));
}

/** `next` is exactly one IMP round at `rate` from `prev`: round(remaining * rate) removed, globally or per layer. */
export function exactRound(prev: TensorsByKey, next: TensorsByKey, rate: number, scope: Scope): true {
  masksMonotone(prev, next);
  return hold('exactRound', firstCountOffTarget(next, targetAfterRound(prev, rate, scope)));
}

/** Same kept count in every layer (random-pruning controls against their ticket). */
export function sameLayerCounts(a: TensorsByKey, like: TensorsByKey): true {
  return hold('sameLayerCounts', firstCountOffTarget(a, targetLike(like, 'the reference mask')));
}

/** The same 0/1 pattern (reinit controls against their ticket; one-shot at rate s against one IMP round). */
export function sameMask(a: TensorsByKey, b: TensorsByKey): true {
  return hold('sameMask', firstMaskDifference(a, b));
}

/**
 * Pruning followed the scores: no pruned entry scores higher than a kept one, over all layers
 * (global) or within each layer (layer). Entries already pruned in `before` are ignored (they are not
 * candidates any more).
 */
export function prunedScoreLowest(masks: TensorsByKey, scores: Scores | ReadonlyMap<string, ArrayLike<number>>, scope: Scope, before?: TensorsByKey): true {
  const groups = scope === 'global' ? [[...masks.keys()]] : [...masks.keys()].map((k) => [k]);
  for (const keys of groups) {
    let maxPruned = -Infinity;
    let at: { tensor: string; index: number } | null = null;
    let minKept = Infinity;
    for (const k of keys) {
      const m = masks.get(k)!;
      const s = scores.get(k);
      if (!s) return hold('prunedScoreLowest', { tensor: k, index: -1, message: 'has no scores' });
      const b = before?.get(k);
      for (let i = 0; i < m.length; i++) {
        if (b && b[i] === 0) continue;
        if (m[i] === 0) {
          if (s[i] > maxPruned) [maxPruned, at] = [s[i], { tensor: k, index: i }];
        } else minKept = Math.min(minKept, s[i]);
      }
    }
    if (at && maxPruned > minKept) return hold('prunedScoreLowest', { ...at, message: `is pruned with score ${maxPruned}, above the lowest kept score ${minKept}` });
  }
  return true;
}


/** Every unit of `g` (block, filter, channel) is kept whole or pruned whole; `shapes` by weight key. */
export function masksStructured(masks: TensorsByKey, shapes: Shapes, g: Granularity): true {
  return hold('masksStructured', firstUnstructured(masks, shapes, g));
}

/**
 * Structured pruning to sparsity `s`: whole units, and kept counts within half a unit of
 * total - round(total * s) (overall or per layer), the rule of prune/structured.ts.
 */
export function structuredSparsity(masks: TensorsByKey, sparsity: number, scope: Scope, shapes: Shapes, g: Granularity): true {
  masksStructured(masks, shapes, g);
  return hold('structuredSparsity', firstCountOffTarget(masks, withUnitSlack(targetForSparsity(masks, sparsity, scope), shapes, g)));
}

/** `next` is one structured IMP round at `rate` from `prev`: monotone, whole units, count within half a unit. */
export function structuredRound(prev: TensorsByKey, next: TensorsByKey, rate: number, scope: Scope, shapes: Shapes, g: Granularity): true {
  masksMonotone(prev, next);
  masksStructured(next, shapes, g);
  return hold('structuredRound', firstCountOffTarget(next, withUnitSlack(targetAfterRound(prev, rate, scope), shapes, g)));
}

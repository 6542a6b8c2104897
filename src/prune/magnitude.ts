// Pruning decisions, on the host and exact: which surviving weights to remove so that exactly the
// requested count goes, globally (one threshold over all prunable weights) or per layer.
//
// Ties in |w| are broken deterministically by (layer order, element index): the earlier one is pruned
// first. Scores are a function so that other criteria (e.g. movement) can plug in later.
//
// With a `Structure` whose granularity is not 'weight', whole units go instead (structured.ts: unit
// scores, and how a count in weights is met by units that hold many); without one, or at 'weight',
// the element rule below runs unchanged.
import { HostRandom } from '../tensor/random-host.js';
import { countKept, type HostMasks } from './masks.js';
import { pruneLowestUnits, randomUnitsLike, unitSlackOf, type Structure } from './structured.js';

export type Scope = 'global' | 'layer';

/** Per-layer scores (higher = more important) for the current weights. */
export type Scores = Map<string, Float32Array>;

export function magnitudeScores(weights: ReadonlyMap<string, Float32Array>): Scores {
  const s: Scores = new Map();
  for (const [k, w] of weights) s.set(k, w.map(Math.abs));
  return s;
}

/** How many of `remaining` weights to prune this round: round(remaining * rate). */
export function pruneCount(remaining: number, rate: number): number {
  if (!(rate >= 0 && rate <= 1)) throw new Error(`pruning rate ${rate} must be in [0, 1]`);
  return Math.round(remaining * rate);
}

/**
 * Weights to keep for a target sparsity: total - round(total * sparsity), the same rounding as
 * pruneCount, so one-shot to s keeps exactly what one IMP round at rate s keeps.
 */
export function keepCountFor(total: number, sparsity: number): number {
  if (!(sparsity >= 0 && sparsity <= 1)) throw new Error(`sparsity ${sparsity} must be in [0, 1]`);
  return total - Math.round(total * sparsity);
}

/**
 * Removes the `count` lowest-scoring surviving entries among `keys` (pruned entries never return).
 * Sort order: score ascending, then key order, then index: deterministic.
 */
function pruneLowest(masks: HostMasks, scores: Scores, keys: readonly string[], count: number): void {
  if (count <= 0) return;
  const cand: { k: number; i: number; s: number }[] = [];
  keys.forEach((key, k) => {
    const m = masks.get(key)!;
    const s = scores.get(key);
    if (!s || s.length !== m.length) throw new Error(`scores for '${key}' missing or of the wrong size`);
    for (let i = 0; i < m.length; i++) if (m[i]) cand.push({ k, i, s: s[i] });
  });
  if (count > cand.length) throw new Error(`cannot prune ${count} weights: only ${cand.length} remain`);
  cand.sort((a, b) => a.s - b.s || a.k - b.k || a.i - b.i);
  for (let j = 0; j < count; j++) masks.get(keys[cand[j].k])![cand[j].i] = 0;
}

function cloneMasks(m: HostMasks): HostMasks {
  return new Map([...m].map(([k, v]) => [k, Uint8Array.from(v)]));
}

/** The element rule, or whole units when `structure` asks for a coarser granularity. */
function pruneSome(masks: HostMasks, scores: Scores, keys: readonly string[], count: number, structure?: Structure): void {
  if (structure && structure.granularity !== 'weight') pruneLowestUnits(masks, scores, keys, count, structure);
  else pruneLowest(masks, scores, keys, count);
}

/** One IMP round: prune `rate` of the remaining weights (globally, or of each layer's remaining). */
export function pruneByRate(masks: HostMasks, scores: Scores, rate: number, scope: Scope, structure?: Structure): HostMasks {
  const out = cloneMasks(masks);
  const keys = [...out.keys()];
  if (scope === 'global') {
    const remaining = keys.reduce((n, k) => n + countKept(out.get(k)!), 0);
    pruneSome(out, scores, keys, pruneCount(remaining, rate), structure);
  } else {
    for (const k of keys) pruneSome(out, scores, [k], pruneCount(countKept(out.get(k)!), rate), structure);
  }
  return out;
}

/**
 * Prunes to a target sparsity of the prunable weights (overall for global scope, of each layer for
 * layer scope), starting from `masks` (which must not already be sparser).
 */
export function pruneToSparsity(masks: HostMasks, scores: Scores, sparsity: number, scope: Scope, structure?: Structure): HostMasks {
  const out = cloneMasks(masks);
  const keys = [...out.keys()];
  const need = (ks: string[]) => {
    const total = ks.reduce((n, k) => n + out.get(k)!.length, 0);
    const kept = ks.reduce((n, k) => n + countKept(out.get(k)!), 0);
    const target = keepCountFor(total, sparsity);
    // Whole units may overshoot a level's target by up to half a unit, past the next level's.
    if (target > kept && target - kept <= unitSlackOf(structure, ks)) return 0;
    if (target > kept) throw new Error(`sparsity ${sparsity} is below the current ${(1 - kept / total).toFixed(4)}: pruned weights never return`);
    return kept - target;
  };
  if (scope === 'global') pruneSome(out, scores, keys, need(keys), structure);
  else for (const k of keys) pruneSome(out, scores, [k], need([k]), structure);
  return out;
}

/**
 * Random-pruning control: a random mask with exactly the per-layer kept counts of `like`, seeded.
 * (Frankle & Carbin's "random pruning" baseline.) At a coarser granularity, random whole units with
 * the same per-layer counts (structured.ts randomUnitsLike).
 */
export function randomMasksLike(like: HostMasks, seed: number, structure?: Structure): HostMasks {
  if (structure && structure.granularity !== 'weight') return randomUnitsLike(like, structure, seed);
  const out: HostMasks = new Map();
  let stream = 0;
  for (const [k, m] of like) {
    const rng = new HostRandom(seed, 0x9e3779b9 ^ stream++);
    const idx = rng.shuffle(Array.from({ length: m.length }, (_, i) => i));
    const r = new Uint8Array(m.length);
    const kept = countKept(m);
    for (let j = 0; j < kept; j++) r[idx[j]] = 1;
    out.set(k, r);
  }
  return out;
}

/** The sparsity after n rounds of pruning `rate` of the remaining weights: 1 - (1 - rate)^n. */
export function sparsityAfter(rounds: number, rate: number): number {
  return 1 - (1 - rate) ** rounds;
}

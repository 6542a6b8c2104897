// Structured pruning decisions (granularity.ts): whole units go, still exact host arithmetic with a
// deterministic order, and the target still counted in weights.
//
// Scores: a unit's score is the norm of its weights' scores per weight: block:B the L2 norm over
// sqrt(unit size) (RMS), filter and channel the L1 norm over the unit size (mean |w|). Within a layer
// every full unit has the same size, so the order is exactly the plain L2 / L1 order the literature
// uses; dividing by the size only matters where units of different sizes meet (global scope, short
// tail blocks), where the plain norm would prune the layers with the smallest fan-in first whatever
// their weights (Meso-4's conv1 filters hold 27 weights, conv4's 400).
//
// Counts: a round asks for n weights (round(remaining * rate), or what a target sparsity leaves), and
// units hold many. Units go in score order (score, then layer order, then unit id) while the pruned
// count stays <= n; at the first unit that would cross n it is pruned too only if that lands strictly
// nearer to n (a tie prunes less), and the round stops. So the achieved count is within half of that
// unit's size of n, and sparsity.json reports exactly what was achieved. A layer's last surviving unit
// is never pruned (a layer without units cuts the network); it is skipped and the walk goes on.
import { HostRandom } from '../tensor/random-host.js';
import { blockSize, unitLayout, type Granularity, type UnitLayout } from './granularity.js';
import type { HostMasks } from './masks.js';

/** What structured pruning needs beyond the masks: the granularity and each weight's shape. */
export interface Structure {
  granularity: Granularity;
  shapes: ReadonlyMap<string, readonly number[]>;
}

function layoutOf(s: Structure, key: string): UnitLayout {
  const shape = s.shapes.get(key);
  if (!shape) throw new Error(`no shape for '${key}'`);
  return unitLayout(shape, s.granularity, key);
}

/** Half the largest unit among `keys` (rounded down): how far whole units may miss a count; 0 at 'weight'. */
export function unitSlackOf(s: Structure | undefined, keys: readonly string[]): number {
  if (!s || s.granularity === 'weight') return 0;
  return Math.floor(Math.max(0, ...keys.map((key) => layoutOf(s, key).maxSize)) / 2);
}

/** Per-unit scores of one weight from its element scores (|w|): RMS for blocks, mean for filters/channels. */
export function unitScores(elementScores: ArrayLike<number>, layout: UnitLayout, g: Granularity): Float64Array {
  const acc = new Float64Array(layout.units);
  const l2 = blockSize(g) !== null;
  for (let i = 0; i < elementScores.length; i++) {
    const s = elementScores[i];
    acc[layout.unitOf[i]] += l2 ? s * s : s;
  }
  for (let u = 0; u < layout.units; u++) acc[u] = l2 ? Math.sqrt(acc[u] / layout.size[u]) : acc[u] / layout.size[u];
  return acc;
}

/** Kept elements per unit. */
function keptPerUnit(m: Uint8Array, layout: UnitLayout): Int32Array {
  const k = new Int32Array(layout.units);
  for (let i = 0; i < m.length; i++) if (m[i]) k[layout.unitOf[i]]++;
  return k;
}

/**
 * Removes the lowest-scoring surviving units among `keys` until about `count` weights are gone (the
 * rule at the top of this file). Returns the number of weights pruned.
 */
export function pruneLowestUnits(masks: HostMasks, scores: ReadonlyMap<string, ArrayLike<number>>, keys: readonly string[], count: number, s: Structure): number {
  if (count <= 0) return 0;
  const cand: { k: number; u: number; s: number; w: number }[] = [];
  const alive: number[] = [];
  const kept: Int32Array[] = [];
  keys.forEach((key, k) => {
    const m = masks.get(key)!;
    const sc = scores.get(key);
    if (!sc || sc.length !== m.length) throw new Error(`scores for '${key}' missing or of the wrong size`);
    const layout = layoutOf(s, key);
    const us = unitScores(sc, layout, s.granularity);
    const kp = keptPerUnit(m, layout);
    kept.push(kp);
    let a = 0;
    for (let u = 0; u < layout.units; u++) {
      if (kp[u] === 0) continue;
      a++;
      cand.push({ k, u, s: us[u], w: kp[u] });
    }
    alive.push(a);
  });
  cand.sort((a, b) => a.s - b.s || a.k - b.k || a.u - b.u);
  let pruned = 0;
  const chosen: { k: number; u: number }[] = [];
  for (const c of cand) {
    if (pruned >= count) break;
    if (alive[c.k] <= 1) continue;
    if (pruned + c.w > count) {
      // Crossing: take it only if that lands strictly nearer the requested count.
      if (pruned + c.w - count < count - pruned) {
        chosen.push(c);
        pruned += c.w;
        alive[c.k]--;
      }
      break;
    }
    chosen.push(c);
    pruned += c.w;
    alive[c.k]--;
  }
  const dead = keys.map(() => new Set<number>());
  for (const c of chosen) dead[c.k].add(c.u);
  keys.forEach((key, k) => {
    if (!dead[k].size) return;
    const m = masks.get(key)!;
    const layout = layoutOf(s, key);
    for (let i = 0; i < m.length; i++) if (dead[k].has(layout.unitOf[i])) m[i] = 0;
  });
  if (count - pruned > unitSlackOf(s, keys)) {
    throw new Error(`cannot prune ${count} weights at ${s.granularity} granularity: only ${pruned} can go without removing a layer's last ${s.granularity === 'filter' ? 'filter' : 'unit'}`);
  }
  return pruned;
}

/**
 * Random-pruning control at a granularity: per layer, as many units of each size as `like` keeps,
 * drawn uniformly with a seeded stream per layer (same streams as the unstructured control), so the
 * per-layer kept weight counts equal the ticket's exactly. `like` must be unit-structured.
 */
export function randomUnitsLike(like: HostMasks, s: Structure, seed: number): HostMasks {
  const out: HostMasks = new Map();
  let stream = 0;
  for (const [key, m] of like) {
    const rng = new HostRandom(seed, 0x9e3779b9 ^ stream++);
    const layout = layoutOf(s, key);
    const kp = keptPerUnit(m, layout);
    // Units grouped by size (full units, short tail blocks); each group keeps the ticket's count.
    const bySize = new Map<number, { units: number[]; keep: number }>();
    for (let u = 0; u < layout.units; u++) {
      const sz = layout.size[u];
      if (kp[u] !== 0 && kp[u] !== sz) throw new Error(`'${key}': the ticket's mask is not ${s.granularity}-structured (unit ${u} keeps ${kp[u]} of ${sz})`);
      const g = bySize.get(sz) ?? { units: [], keep: 0 };
      g.units.push(u);
      if (kp[u]) g.keep++;
      bySize.set(sz, g);
    }
    const keepUnit = new Uint8Array(layout.units);
    for (const [, g] of [...bySize].sort((a, b) => b[0] - a[0])) {
      const order = rng.shuffle(g.units);
      for (let j = 0; j < g.keep; j++) keepUnit[order[j]] = 1;
    }
    const r = new Uint8Array(m.length);
    for (let i = 0; i < m.length; i++) r[i] = keepUnit[layout.unitOf[i]];
    out.set(key, r);
  }
  return out;
}

// Structured masks, checked from files: a mask made at a granularity (granularity.ts) keeps or prunes
// each unit whole, and its kept count meets the level's target within half a unit (structured.ts's
// rule). Host only, like the other invariants; `ticketlab check` calls `structureChecker` once per run.
import * as fs from 'node:fs';
import { readF32Tensors } from '../nn/checkpoint.js';
import { runFile } from '../io/run-paths.js';
import { describeUnit, granularityOf, parseGranularity, unitLayout, type Granularity } from './granularity.js';
import type { KeptTarget, Offence, TensorsByKey } from './invariants.js';

/** Shapes by weight key (`conv1.weight`), as the masks' files give them. */
export type Shapes = ReadonlyMap<string, readonly number[]>;

/**
 * The first unit that is partly kept, naming the layer's mask tensor and the unit
 * (`conv2.weight_mask: block 17 (out 8..15, in 0, ky 3, kx 2) keeps 3 of its 8 weights`).
 */
export function firstUnstructured(masks: TensorsByKey, shapes: Shapes, g: Granularity): Offence | null {
  if (g === 'weight') return null;
  for (const [key, m] of masks) {
    const shape = shapes.get(key);
    if (!shape) return { tensor: `${key}_mask`, index: -1, message: 'has no shape to check its structure against' };
    if (shape.length !== 2 && shape.length !== 4) continue; // not a conv/linear weight (e.g. a companion mask)
    const layout = unitLayout(shape, g, key);
    const kept = new Int32Array(layout.units);
    const first = new Int32Array(layout.units).fill(-1);
    for (let i = 0; i < m.length; i++) {
      const u = layout.unitOf[i];
      if (m[i] !== 0) kept[u]++;
      if (first[u] < 0) first[u] = i;
    }
    for (let u = 0; u < layout.units; u++) {
      if (kept[u] !== 0 && kept[u] !== layout.size[u]) {
        return { tensor: `${key}_mask`, index: first[u], message: `is in ${describeUnit(shape, g, u)}, which keeps ${kept[u]} of its ${layout.size[u]} weights: not ${g}-structured` };
      }
    }
  }
  return null;
}

/**
 * A count target widened to what whole units can meet: half the largest unit (of all layers for a
 * global target, of each layer for a per-layer one). At 'weight' the target is returned unchanged.
 */
export function withUnitSlack(target: KeptTarget, shapes: Shapes, g: Granularity): KeptTarget {
  if (g === 'weight') return target;
  const half = (key: string) => {
    const shape = shapes.get(key);
    return shape && (shape.length === 2 || shape.length === 4) ? Math.floor(unitLayout(shape, g, key).maxSize / 2) : 0;
  };
  const why = `${target.why}, within half a ${g} unit`;
  if (target.scope === 'global') return { ...target, why, slack: Math.max(0, ...[...shapes.keys()].map(half)) };
  return { ...target, why, slack: new Map([...target.kept.keys()].map((k) => [k, half(k)])) };
}

/** The granularity a run's config.json names (absent: 'weight'); errors name the file. */
export function configGranularity(cfg: Record<string, unknown> | null, file: string): Granularity {
  const g = cfg?.granularity;
  if (g === undefined) return granularityOf({});
  if (typeof g !== 'string') throw new Error(`${file}: granularity must be a string, got ${JSON.stringify(g)}`);
  try {
    return parseGranularity(g, 'configGranularity', 'granularity');
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

/** Weight shapes of the `<key>_mask` tensors of a mask file, keyed by weight. */
export async function maskShapes(file: string): Promise<Map<string, number[]>> {
  const { tensors } = await readF32Tensors(file);
  return new Map([...tensors].filter(([k]) => k.endsWith('_mask')).map(([k, t]) => [k.slice(0, -'_mask'.length), t.shape]));
}

/** One weight's dead filters and the parameters that go with them (prune/filter-companions.ts). */
export interface Companions {
  of: string;
  params: string[];
  channels: number[];
}

/** sparsity.json's `companions` (filter granularity), or [] when it has none or does not parse. */
export function companionsOf(levelDir: string): Companions[] {
  try {
    const o = JSON.parse(fs.readFileSync(runFile(levelDir, 'sparsity'), 'utf8')) as { companions?: unknown };
    return Array.isArray(o.companions) ? (o.companions as Companions[]) : [];
  } catch {
    return []; // sparsity.json's own invariant reports it
  }
}

/**
 * Filter granularity: the channels listed for a weight are exactly its dead filters (output channels
 * with no kept entry), and every listed companion parameter (bias, batch-norm gamma/beta; `valueKey`
 * maps it, e.g. to optimizer state) is exactly +0 there in `values`.
 */
export function firstLiveCompanion(records: readonly Companions[], masks: TensorsByKey, shapes: Shapes, values: TensorsByKey, valueKey: (key: string) => string = (k) => k): Offence | null {
  for (const r of records) {
    const m = masks.get(r.of);
    const shape = shapes.get(r.of);
    if (!m || !shape || !Array.isArray(r.channels) || !Array.isArray(r.params)) return { tensor: r.of, index: -1, message: 'has a companions entry in sparsity.json that names no mask, or lacks channels or params' };
    const per = m.length / shape[0];
    const dead: number[] = [];
    for (let o = 0; o < shape[0]; o++) {
      let kept = false;
      for (let i = o * per; i < (o + 1) * per && !kept; i++) kept = m[i] !== 0;
      if (!kept) dead.push(o);
    }
    if (dead.join() !== r.channels.join()) return { tensor: `${r.of}_mask`, index: -1, message: `has dead filters [${dead.join(', ')}], sparsity.json's companions list [${r.channels.join(', ')}]` };
    for (const p of r.params) {
      const v = values.get(valueKey(p));
      if (!v) continue;
      for (const c of r.channels) if (!Object.is(v[c], 0)) return { tensor: valueKey(p), index: c, message: `= ${Object.is(v[c], -0) ? '-0' : v[c]} but goes with dead filter ${c} of ${r.of} (must be exactly +0)` };
    }
  }
  return null;
}

/** What `ticketlab check` asks of a run's structure: one per run, reading each mask file's shapes once. */
export interface StructureChecker {
  granularity: Granularity;
  /** The first partly kept unit of a level's masks, or null ('weight': always null). */
  offence(maskFile: string, masks: TensorsByKey): Promise<Offence | null>;
  /** The level's count target, widened to whole units. */
  target(maskFile: string, target: KeptTarget): Promise<KeptTarget>;
  /** A companion of a dead filter (sparsity.json's `companions`) that is not +0 in `values` (or its state). */
  companion(levelDir: string, masks: TensorsByKey, values: TensorsByKey, valueKey?: (key: string) => string): Promise<Offence | null>;
}

export function structureChecker(cfg: Record<string, unknown> | null, configFile: string): StructureChecker {
  const granularity = configGranularity(cfg, configFile);
  const shapes = new Map<string, Promise<Shapes>>();
  const shapesOf = (f: string) => {
    let p = shapes.get(f);
    if (!p) shapes.set(f, (p = maskShapes(f)));
    return p;
  };
  return {
    granularity,
    offence: async (f, m) => (granularity === 'weight' ? null : firstUnstructured(m, await shapesOf(f), granularity)),
    target: async (f, t) => (granularity === 'weight' ? t : withUnitSlack(t, await shapesOf(f), granularity)),
    companion: async (dir, m, values, valueKey) => {
      const records = companionsOf(dir);
      return records.length ? firstLiveCompanion(records, m, await shapesOf(runFile(dir, 'mask')), values, valueKey) : null;
    },
  };
}

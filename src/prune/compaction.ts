// Which channels a level's masks let compaction remove (nn/compact.ts says how the smaller network
// runs): per site of the model, a producer channel whose filter is pruned together with its companions
// (exactly 0 in the masked network), whose every consumer weight is pruned (read by nothing), or whose
// filter is pruned without its companions (a learned constant the site carries into its consumers). A
// dead filter at a site that declares no carry stays in the network and is counted. Exact host
// arithmetic on the 0/1 masks, so every granularity's dead filters and channels (what `ticketlab masks`
// reports) compact.
import type { Module } from '../nn/module.js';
import type { Conv2d, Linear } from '../nn/layers.js';
import { columnsPerChannel, compactionSites, installCompaction, producerSlices, siteWidth, type Compaction, type RemovedChannel, type SiteCut } from '../nn/compact.js';
import { deadOutputs } from './filter-companions.js';
import type { HostMasks, PrunableWeight } from './masks.js';

export interface CompactionCuts {
  cuts: SiteCut[];
  /** Dead filters kept in the network: their channel is a constant something reads, at a site without a carry. */
  declined: number;
  /** Removed channels, of all the sites' channels. */
  removed: number;
  /** Of the removed, the constant channels carried into the consumers. */
  carried: number;
  channels: number;
}

/** Unread producer channels: every consumer column that reads them is pruned (per: columns per channel). */
function unreadChannels(mask: Uint8Array, rows: number, channels: number, per: number, taps: number): boolean[] {
  const cols = channels * per;
  const unread: boolean[] = Array.from({ length: channels }, () => true);
  for (let r = 0; r < rows; r++) {
    for (let col = 0; col < cols; col++) {
      const c = Math.floor(col / per);
      if (!unread[c]) continue;
      for (let t = 0; t < taps; t++) if (mask[(r * cols + col) * taps + t]) unread[c] = false;
    }
  }
  return unread;
}

/**
 * The channels each site of `model` can drop under `masks`; companions: the per-channel keep masks of
 * the level's companion parameters (filter-companions.ts filterCompanions; empty outside `filter`).
 */
export function compactionCuts(model: Module, ws: readonly PrunableWeight[], masks: HostMasks, companions: ReadonlyMap<string, Float32Array>): CompactionCuts {
  const sites = compactionSites(model) ?? [];
  const names = new Map<Module, string>([...model.namedModules()].map(([n, m]) => [m, n]));
  const maskOf = (l: Conv2d | Linear) => maskOfLayer(ws, masks, l);
  // A parameter is held at 0 on channel c when the level masks it there (absent parameter: nothing to hold).
  const held = (key: string | null, c: number) => key === null || companions.get(key)?.[c] === 0;
  const cuts: SiteCut[] = [];
  let declined = 0;
  let removedCount = 0;
  let carried = 0;
  let channels = 0;
  for (const site of sites) {
    const n = siteWidth(site);
    channels += n;
    const slices = producerSlices(site);
    const per = columnsPerChannel(site);
    const dead: boolean[] = [];
    const zeroBias: boolean[] = [];
    for (const { layer, n: np } of slices) {
      const pm = maskOf(layer);
      dead.push(...(pm ? deadOutputs(pm, np) : Array.from({ length: np }, () => false)));
      const pName = names.get(layer)!;
      for (let c = 0; c < np; c++) zeroBias.push(held(layer.bias ? `${pName}.bias` : null, c));
    }
    const unread: boolean[] = Array.from({ length: n }, () => true);
    for (const consumer of site.consumers) {
      const cm = maskOf(consumer);
      const [rows, inputs] = consumer.weight.shape;
      const u = cm ? unreadChannels(cm, rows, n, per, consumer.weight.size / (rows * inputs)) : null;
      for (let c = 0; c < n; c++) unread[c] &&= u ? u[c] : false;
    }
    const nName = site.norm ? names.get(site.norm)! : null;
    const removed = new Map<number, RemovedChannel>();
    for (let c = 0; c < n; c++) {
      const zero = dead[c] && zeroBias[c] && held(nName && site.norm!.weight ? `${nName}.weight` : null, c) && held(nName && site.norm!.bias ? `${nName}.bias` : null, c);
      if (zero) removed.set(c, 'zero');
      else if (unread[c]) removed.set(c, 'unread');
      else if (dead[c] && site.carry) removed.set(c, 'constant');
      else if (dead[c]) declined++;
    }
    // Zero-width layers are not worth a kernel special case: each producer keeps at least one channel.
    for (const { offset, n: np } of slices) if (range(np).every((c) => removed.has(offset + c))) removed.delete(offset);
    removedCount += removed.size;
    carried += [...removed.values()].filter((w) => w === 'constant').length;
    cuts.push({ site, removed });
  }
  return { cuts, declined, removed: removedCount, carried, channels };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * Installs compaction for a level when its masks remove any channel (null otherwise); the planner's
 * 'compaction' choice then decides per forward whether the compacted views run.
 */
export function compactLevel(model: Module, ws: readonly PrunableWeight[], masks: HostMasks, companions: ReadonlyMap<string, Float32Array>): { compaction: Compaction | null; cuts: CompactionCuts } {
  const cuts = compactionCuts(model, ws, masks, companions);
  if (!cuts.removed) return { compaction: null, cuts };
  return { compaction: installCompaction(model, cuts.cuts, (l) => maskOfLayer(ws, masks, l)), cuts };
}

function maskOfLayer(ws: readonly PrunableWeight[], masks: HostMasks, l: Conv2d | Linear): Uint8Array | null {
  const w = ws.find((x) => x.layer === l);
  return w ? (masks.get(w.key) ?? null) : null;
}

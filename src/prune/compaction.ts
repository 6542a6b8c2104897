// Which channels a level's masks let compaction remove (nn/compact.ts says how the smaller network
// runs): per site of the model, a producer channel whose filter is pruned together with its companions
// (exactly 0 in the masked network), or whose every consumer weight is pruned (read by nothing). A
// dead filter without companions that something still reads is declined (its channel is a learned
// constant, see nn/compact.ts) and counted. Exact host arithmetic on the 0/1 masks.
import type { Module } from '../nn/module.js';
import type { Conv2d, Linear } from '../nn/layers.js';
import { columnsPerChannel, compactionSites, installCompaction, outputsOf, type Compaction, type RemovedChannel, type SiteCut } from '../nn/compact.js';
import { deadOutputs } from './filter-companions.js';
import type { HostMasks, PrunableWeight } from './masks.js';

export interface CompactionCuts {
  cuts: SiteCut[];
  /** Dead filters kept in the network: their channel is a constant something reads. */
  declined: number;
  /** Removed channels, of all the sites' channels. */
  removed: number;
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
  let channels = 0;
  for (const site of sites) {
    const n = outputsOf(site.producer);
    channels += n;
    const pm = maskOf(site.producer);
    const cm = maskOf(site.consumer);
    const dead = pm ? deadOutputs(pm, n) : Array.from({ length: n }, () => false);
    const per = columnsPerChannel(site);
    const taps = site.consumer.weight.size / (site.consumer.weight.shape[0] * site.consumer.weight.shape[1]);
    const unread = cm ? unreadChannels(cm, site.consumer.weight.shape[0], n, per, taps) : Array.from({ length: n }, () => false);
    const pName = names.get(site.producer)!;
    const nName = site.norm ? names.get(site.norm)! : null;
    const removed = new Map<number, RemovedChannel>();
    for (let c = 0; c < n; c++) {
      const zero = dead[c] && held(site.producer.bias ? `${pName}.bias` : null, c) && held(nName && site.norm!.weight ? `${nName}.weight` : null, c) && held(nName && site.norm!.bias ? `${nName}.bias` : null, c);
      if (zero) removed.set(c, 'zero');
      else if (unread[c]) removed.set(c, 'unread');
      else if (dead[c]) declined++;
    }
    // Zero-width layers are not worth a kernel special case: a site keeps at least one channel.
    if (removed.size === n) removed.delete(0);
    removedCount += removed.size;
    cuts.push({ site, removed });
  }
  return { cuts, declined, removed: removedCount, channels };
}

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

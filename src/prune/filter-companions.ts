// Under `filter` granularity a pruned filter goes whole, with what only it feeds: its own bias entry
// and the batch-norm channel that normalises it (gamma and beta). Without them a "pruned" filter
// still outputs a learned constant: conv bias through ReLU, or BN's beta (the channel is constant, so
// BN maps it to beta in training and to about beta in eval). With them the channel outputs exactly 0,
// in training and in eval, which is what removing the filter (Li et al. 2017; what compaction builds)
// computes, so the masked network and a physically smaller one are the same function.
//
// These companion masks are not written to mask.safetensors: they follow from the weight masks and
// the model, and the files keep one `<layer>.weight_mask` per prunable weight as before. The level
// records them in sparsity.json (`companions`: each conv/linear with dead filters, the parameters that
// go with them, the channels), so `ticketlab check` verifies them from files. They go to the
// optimizer beside the weight masks, which zeroes those entries (and their state) at the start and
// keeps them +0, so final/best/checkpoint files hold exact zeros there and a PyTorch user loading them
// with the weight masks gets the same network.
//
// A filter's BN is the next BatchNorm2d in module order when no other conv/linear/BN comes between
// and its width equals the conv's output channels (Meso-4, CNN-5, ResNet-18's blocks and downsample
// paths). MesoInception-4's inception branches are concatenated before their BN; their filters keep
// the BN channel (a constant beta), which compaction carries into the next layer (nn/compact.ts).
import type { Module } from '../nn/module.js';
import { BatchNorm2d, Conv2d, Linear } from '../nn/layers.js';
import { fromArray, keep, type Tensor } from '../tensor/tensor.js';
import type { HostMasks, PrunableWeight } from './masks.js';

/** Output units of a [out, ...] weight mask with no kept entry. */
export function deadOutputs(mask: Uint8Array, out: number): boolean[] {
  const per = mask.length / out;
  const dead: boolean[] = [];
  for (let o = 0; o < out; o++) {
    let any = false;
    for (let i = o * per; i < (o + 1) * per && !any; i++) any = mask[i] !== 0;
    dead.push(!any);
  }
  return dead;
}

/** The BN that directly normalises each conv's output, by the conv's weight key (see above). */
export function batchNormAfter(model: Module): Map<string, { name: string; bn: BatchNorm2d }> {
  const seq = [...model.namedModules()].filter(([, m]) => m instanceof Conv2d || m instanceof Linear || m instanceof BatchNorm2d);
  const out = new Map<string, { name: string; bn: BatchNorm2d }>();
  seq.forEach(([name, m], i) => {
    const next = seq[i + 1];
    if (m instanceof Conv2d && next && next[1] instanceof BatchNorm2d && next[1].numFeatures === m.outChannels) out.set(`${name}.weight`, { name: next[0], bn: next[1] });
  });
  return out;
}

/** What goes with the dead filters of one weight: its key, the per-channel parameters, the channels. */
export interface CompanionRecord {
  of: string;
  params: string[];
  channels: number[];
}

/** The companions of the dead filters of `masks`, one record per weight that has any (sparsity.json's `companions`). */
export function companionRecords(model: Module, ws: readonly PrunableWeight[], masks: HostMasks): CompanionRecord[] {
  const bns = batchNormAfter(model);
  const out: CompanionRecord[] = [];
  for (const w of ws) {
    const m = masks.get(w.key);
    if (!m) throw new Error(`no mask for '${w.key}'`);
    const channels = deadOutputs(m, w.shape[0]).flatMap((d, o) => (d ? [o] : []));
    const layer = w.key.slice(0, -'.weight'.length);
    const bn = bns.get(w.key);
    const params = [...(w.layer.bias ? [`${layer}.bias`] : []), ...(bn?.bn.weight ? [`${bn.name}.weight`] : []), ...(bn?.bn.bias ? [`${bn.name}.bias`] : [])];
    if (channels.length && params.length) out.push({ of: w.key, params, channels });
  }
  return out;
}

/** Host companion masks (parameter key -> 0/1 per channel) of the dead filters of `masks`. */
export function filterCompanions(model: Module, ws: readonly PrunableWeight[], masks: HostMasks): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const r of companionRecords(model, ws, masks)) {
    const w = ws.find((x) => x.key === r.of)!;
    const keepMask = new Float32Array(w.shape[0]).fill(1);
    for (const c of r.channels) keepMask[c] = 0;
    for (const p of r.params) out.set(p, keepMask);
  }
  return out;
}

/** The companion masks as GPU tensors for the optimizer (kept: the caller disposes them). */
export function filterCompanionTensors(model: Module, ws: readonly PrunableWeight[], masks: HostMasks): Map<string, Tensor> {
  return new Map([...filterCompanions(model, ws, masks)].map(([k, m]) => [k, keep(fromArray(m, [m.length]))]));
}

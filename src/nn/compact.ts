// Compaction: a pruned model whose masks leave whole channels removable runs as a physically smaller
// dense network. A channel between a producer (conv or linear) and its consumer can go when
//   zero    its filter is pruned with its companions (bias, batch-norm gamma and beta:
//           prune/filter-companions.ts), so the masked network computes exactly 0 there, in training
//           and in eval; or
//   unread  every consumer weight that reads it is pruned, so nothing downstream sees it.
// Then the producer's filter, its bias, the batch-norm channel and the consumer's input columns leave
// the kernels' problem: the layers between run on fewer channels, instead of multiplying by zero.
//
// The parameters, buffers and optimizer state stay full-size under their PyTorch names: each forward
// gathers the kept rows / columns / channels of a parameter (a small kernel, so the values follow every
// optimizer step), and the gradient scatters back into a zeroed full-size gradient, so the optimizer,
// the checkpoints, best/final files and resume see what the masked network gives them. A compacted
// batch norm writes its running statistics back after each training forward: a zero channel's decay
// as the masked network's (mean 0, variance 0 averaged in), an unread channel's left as they were
// (the masked network keeps averaging statistics nothing reads: the one place the files differ, in
// values that do not change the function). A dropout between the two draws its mask at full size and
// gathers the kept columns, so it drops what the masked network drops.
//
// A dead filter WITHOUT companions is not removed unless nothing reads it: its channel outputs a
// learned constant (the conv bias through the activation, or batch norm's beta), which the next conv
// with zero padding turns into a per-position map (border taps see less of it), not one bias; carrying
// it exactly would mean a second conv on a constant image per step, for filters `weight` or `block`
// granularity rarely kills. (Under `filter` granularity every dead filter has its companions.)
//
// Sites come from the model (Compactable): each names a producer, the batch norm after it, the
// dropouts on the way and the consumer; between them only channel-wise ops (activations, pooling,
// identity taps, flatten into the consumer's columns). Models with concatenations or residual adds
// between layers (MesoInception-4, ResNet-18) declare none and run masked.
import type { Module } from './module.js';
import { BatchNorm2d, Conv2d, Dropout, Linear, type CompactView } from './layers.js';
import * as F from '../autograd/functional.js';
import * as FN from '../autograd/functional-nn.js';
import { fromArray, keep, type Tensor } from '../tensor/tensor.js';
import { dropoutMask } from '../tensor/ops/random.js';
import { COMPACT_DECAY, COMPACT_KEEP, compactionChoice, gatherAt as gatherRaw, writeBackRunning } from '../tensor/ops/compact.js';

/** A channel boundary compaction may cut: producer -> [batch norm] -> channel-wise ops, [dropouts] -> consumer. */
export interface CompactionSite {
  producer: Conv2d | Linear;
  norm: BatchNorm2d | null;
  /** Dropouts after a flatten, on [N, consumer inputs]. */
  dropouts: Dropout[];
  consumer: Conv2d | Linear;
}

/** A model that declares its compaction sites. */
export interface Compactable {
  compactionSites(): CompactionSite[];
}

/** The model's sites, or null when it declares none. */
export function compactionSites(m: Module): CompactionSite[] | null {
  const f = (m as Partial<Compactable>).compactionSites;
  return typeof f === 'function' ? f.call(m) : null;
}

export type RemovedChannel = 'zero' | 'unread';

/** What one site removes: channel of the producer's output -> why. */
export interface SiteCut {
  site: CompactionSite;
  removed: ReadonlyMap<number, RemovedChannel>;
}

export function outputsOf(l: Conv2d | Linear): number {
  return l instanceof Conv2d ? l.outChannels : l.outFeatures;
}

export function inputsOf(l: Conv2d | Linear): number {
  return l instanceof Conv2d ? l.inChannels : l.inFeatures;
}

/** Consumer inputs per producer channel (1 for conv -> conv, H*W for conv -> flatten -> linear). */
export function columnsPerChannel(s: CompactionSite): number {
  const per = inputsOf(s.consumer) / outputsOf(s.producer);
  if (!Number.isInteger(per) || per < 1) throw new Error(`compaction site: ${inputsOf(s.consumer)} consumer inputs for ${outputsOf(s.producer)} producer channels`);
  return per;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function keptOf(n: number, removed: ReadonlyMap<number, RemovedChannel>): number[] {
  return range(n).filter((c) => !removed.has(c));
}

/** The kept input columns of a consumer: each kept channel's `per` columns. */
function keptColumns(kept: readonly number[], per: number): number[] {
  return kept.flatMap((c) => range(per).map((j) => c * per + j));
}

/** The choice's geometry: each site's producer and its kept / total channels. */
export function sitesKey(model: Module, cuts: readonly SiteCut[]): string {
  const names = new Map<Module, string>([...model.namedModules()].map(([n, m]) => [m, n]));
  return cuts.map((c) => `${names.get(c.site.producer) ?? '?'} ${outputsOf(c.site.producer) - c.removed.size}/${outputsOf(c.site.producer)}`).join(' ');
}

/** The installed views of a compacted model; dispose() takes them off and frees their index lists. */
export interface Compaction {
  /** The planner geometry ('conv1 5/8 conv2 3/8 ...'). */
  sites: string;
  dispose(): void;
}

/**
 * Installs the views that run `cuts` compacted whenever the planner's 'compaction' choice for them is
 * 'compacted' (default); hostMask gives a prunable layer's 0/1 mask (null: not pruned).
 */
export function installCompaction(model: Module, cuts: readonly SiteCut[], hostMask: (l: Conv2d | Linear) => ArrayLike<number> | null): Compaction {
  const sites = sitesKey(model, cuts);
  const on = () => compactionChoice(sites) === 'compacted';
  const owned: Tensor[] = [];
  const own = (t: Tensor) => (owned.push(keep(t)), t);
  const u32 = (a: readonly number[]) => own(fromArray(Uint32Array.from(a), [a.length], 'u32'));
  const outKeep = new Map<Conv2d | Linear, number[]>();
  const inKeep = new Map<Conv2d | Linear, number[]>();
  const touched: { compact: CompactView | null }[] = [];
  for (const { site, removed } of cuts) {
    if (!removed.size) continue;
    const n = outputsOf(site.producer);
    const kept = keptOf(n, removed);
    const cols = keptColumns(kept, columnsPerChannel(site));
    outKeep.set(site.producer, kept);
    inKeep.set(site.consumer, cols);
    if (site.norm) {
      site.norm.compact = normView(site.norm, kept, range(n).map((c) => (removed.get(c) === 'zero' ? COMPACT_DECAY : removed.has(c) ? COMPACT_KEEP : kept.indexOf(c))), on, u32);
      touched.push(site.norm);
    }
    for (const d of site.dropouts) {
      d.compact = dropoutView(d, cols, inputsOf(site.consumer), on, own);
      touched.push(d);
    }
  }
  for (const l of new Set([...outKeep.keys(), ...inKeep.keys()])) {
    l.compact = layerView(l, outKeep.get(l) ?? null, inKeep.get(l) ?? null, hostMask(l), on, u32, own);
    touched.push(l);
  }
  return {
    sites,
    dispose() {
      for (const m of touched) m.compact = null;
      for (const t of owned) t.dispose();
    },
  };
}

type U32 = (a: readonly number[]) => Tensor;

/** A conv / linear on its kept output rows and input columns (all of a side when null). */
function layerView(l: Conv2d | Linear, outs: number[] | null, ins: number[] | null, mask: ArrayLike<number> | null, on: () => boolean, u32: U32, own: (t: Tensor) => Tensor): CompactView {
  const [O, I] = l.weight.shape;
  const taps = l.weight.size / (O * I);
  const os = outs ?? range(O);
  const is = ins ?? range(I);
  const flat: number[] = [];
  for (const o of os) for (const i of is) for (let t = 0; t < taps; t++) flat.push((o * I + i) * taps + t);
  const shape = l instanceof Conv2d ? [os.length, is.length, ...l.weight.shape.slice(2)] : [os.length, is.length];
  const widx = u32(flat);
  const bidx = l.bias && outs ? u32(outs) : null;
  // Under filter granularity a kept filter keeps every weight: the compact layer is plain dense.
  const m = mask ? Float32Array.from(flat, (k) => mask[k]) : null;
  const maskC = m && m.some((v) => v === 0) ? own(fromArray(m, shape)) : null;
  return {
    forward(x) {
      if (!on()) return null;
      const w = FN.gatherAt(l.weight, widx, shape);
      const b = l.bias ? (bidx ? FN.gatherAt(l.bias, bidx, [os.length]) : l.bias) : null;
      const kind = l instanceof Conv2d ? 'conv' : 'linear';
      const opts = l instanceof Conv2d ? l.opts : {};
      if (maskC) return FN.prunedLayer(kind, x, w, maskC, null, b, opts);
      return l instanceof Conv2d ? FN.conv2d(x, w, b, opts) : F.linear(x, w, b);
    },
  };
}

/** A batch norm on the kept channels; pos: each full channel's compact index, or COMPACT_DECAY / COMPACT_KEEP. */
function normView(bn: BatchNorm2d, kept: number[], pos: number[], on: () => boolean, u32: U32): CompactView {
  const idx = u32(kept);
  const posT = u32(pos);
  const shape = [kept.length];
  return {
    forward(input, before) {
      if (!on()) return null;
      const x = before ? before(input) : input;
      const gamma = bn.weight ? FN.gatherAt(bn.weight, idx, shape) : null;
      const beta = bn.bias ? FN.gatherAt(bn.bias, idx, shape) : null;
      const mean = gatherRaw(bn.runningMean, idx, shape);
      const variance = gatherRaw(bn.runningVar, idx, shape);
      const y = FN.batchNorm2d(x, gamma, beta, mean, variance, bn.training, bn.momentum, bn.eps);
      if (bn.training) writeBackRunning(posT, mean, variance, bn.runningMean, bn.runningVar, bn.momentum);
      return y;
    },
  };
}

/** A dropout on a consumer's kept columns: the full-size mask of the same stream, gathered. */
function dropoutView(d: Dropout, cols: number[], width: number, on: () => boolean, own: (t: Tensor) => Tensor): CompactView {
  const byBatch = new Map<number, Tensor>();
  const idxFor = (n: number) => {
    let t = byBatch.get(n);
    if (!t) {
      const flat = new Uint32Array(n * cols.length);
      for (let r = 0; r < n; r++) for (let j = 0; j < cols.length; j++) flat[r * cols.length + j] = r * width + cols[j];
      byBatch.set(n, (t = own(fromArray(flat, [flat.length], 'u32'))));
    }
    return t;
  };
  return {
    forward(x) {
      if (!on()) return null;
      if (x.shape.length !== 2 || x.shape[1] !== cols.length) throw new Error(`compacted dropout: input [${x.shape.join(', ')}], expected [N, ${cols.length}]`);
      const n = x.shape[0];
      const full = dropoutMask([n, width], d.p, d.draw(n * width));
      const mask = gatherRaw(full, idxFor(n), x.shape);
      full.dispose();
      return F.dropoutWith(x, mask);
    },
  };
}

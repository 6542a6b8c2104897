// Compaction: a pruned model whose masks leave whole channels removable runs as a physically smaller
// dense network. A site is a channel boundary: one or more producers (conv or linear) whose outputs,
// concatenated on channels, pass an optional batch norm and channel-wise ops to one or more consumers
// that each read every channel. A channel can go when
//   zero      its filter is pruned with its companions (bias, batch-norm gamma and beta:
//             prune/filter-companions.ts), so the masked network computes exactly 0 there, in training
//             and in eval;
//   unread    every consumer weight that reads it is pruned, so nothing downstream sees it; or
//   constant  its filter is pruned but not its companions: the channel is a learned constant (the bias
//             through the activation, batch norm's beta in training, the running-statistics formula in
//             eval), which the site carries into each consumer instead of computing it per pixel.
// Then the producer's filter, its bias, the batch-norm channel and the consumers' input columns leave
// the kernels' problem: the layers between run on fewer channels, instead of multiplying by zero.
//
// The carry: a constant channel k reaches a conv consumer as a per-position map, not one bias, because
// the consumer's zero padding lets border pixels see fewer of its taps. The map is the consumer's conv
// of a batch-1 constant image (k on the carried channels) with their weight columns, added to every
// sample: exact, and 1/N of a conv over those channels. Before a linear consumer the constant columns
// pass the dropouts between (each sample's mask, gathered from the full draw), so there the carry is a
// small [N, carried columns] linear. The map is built from autograd ops on gathered parameters, so beta
// (training), the bias (without a norm) and the consumer's carried weight columns get the masked
// network's gradients. Pools between keep a constant (max pools pad with -inf; a global average pool
// averages a constant), which is why only sites that declare `carry` may carry.
//
// The parameters, buffers and optimizer state stay full-size under their PyTorch names: each forward
// gathers the kept rows / columns / channels of a parameter (a small kernel, so the values follow every
// optimizer step), and the gradient scatters back into a zeroed full-size gradient, so the optimizer,
// the checkpoints, best/final files and resume see what the masked network gives them. A compacted
// batch norm writes its running statistics back after each training forward: a zero channel's decay
// as the masked network's (mean 0, variance 0 averaged in), a constant channel's toward its constant
// (mean v, variance 0), an unread channel's left as they were (the masked network keeps averaging
// statistics nothing reads: the one place the files differ, in values that do not change the
// function). A dropout between the two draws its mask at full size and gathers the kept columns, so it
// drops what the masked network drops.
//
// Sites come from the model (Compactable). Between a site's producers and consumers only channel-wise
// ops (activations, pooling, identity taps, concatenation of the producers, flatten into the consumers'
// columns). ResNet-18's residual streams (a channel is the sum of two paths) declare no site.
import type { Module } from './module.js';
import { BatchNorm2d, Conv2d, Dropout, Linear, type CompactLayerView, type CompactNormView, type CompactView } from './layers.js';
import * as F from '../autograd/functional.js';
import * as FN from '../autograd/functional-nn.js';
import { fromArray, keep, type Tensor } from '../tensor/tensor.js';
import { dropoutMask } from '../tensor/ops/random.js';
import { fill } from '../tensor/ops/map.js';
import { COMPACT_CONST, COMPACT_DECAY, COMPACT_KEEP, compactFused, compactionChoice, gatherAt as gatherRaw, inversePositions, writeBackRunning } from '../tensor/ops/compact.js';
import { batchNormMaxPool, batchNormRelu, type MaxPoolArgs, type ReluOrder } from '../autograd/fused-nn.js';
import { conv2dOutputShape } from '../tensor/ops/conv-geometry.js';
import { record } from '../autograd/tape.js';

/** An element-wise map on the way from producer to consumer (ReLU, LeakyReLU). */
export type ChannelMap = (x: Tensor) => Tensor;

/** A channel boundary compaction may cut: producers (concatenated) -> [batch norm] -> channel-wise ops, [dropouts] -> consumers. */
export interface CompactionSite {
  /** Their outputs, concatenated on channels in this order, are the site's channels. */
  producers: (Conv2d | Linear)[];
  norm: BatchNorm2d | null;
  /** Dropouts after a flatten, on [N, consumer inputs]. */
  dropouts: Dropout[];
  /** Each reads every channel of the site. */
  consumers: (Conv2d | Linear)[];
  /**
   * How a constant channel reaches the consumers: the element-wise maps before and after the norm
   * (between them only pools that keep a constant). Absent: dead filters without companions stay.
   */
  carry?: { before?: ChannelMap; after?: ChannelMap };
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

export type RemovedChannel = 'zero' | 'unread' | 'constant';

/** What one site removes: channel of the producers' concatenated output -> why. */
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

/** The site's channels: the producers' outputs, concatenated. */
export function siteWidth(s: CompactionSite): number {
  return s.producers.reduce((n, p) => n + outputsOf(p), 0);
}

/** Each producer's slice of the site's channels. */
export function producerSlices(s: CompactionSite): { layer: Conv2d | Linear; offset: number; n: number }[] {
  let offset = 0;
  return s.producers.map((layer) => {
    const r = { layer, offset, n: outputsOf(layer) };
    offset += r.n;
    return r;
  });
}

/** Consumer inputs per site channel (1 for conv -> conv, H*W for conv -> flatten -> linear), the same for every consumer. */
export function columnsPerChannel(s: CompactionSite): number {
  const width = siteWidth(s);
  const pers = new Set(s.consumers.map((c) => inputsOf(c) / width));
  const [per] = pers;
  if (pers.size !== 1 || !Number.isInteger(per) || per < 1) throw new Error(`compaction site: consumers with ${s.consumers.map(inputsOf).join(', ')} inputs for ${width} producer channels`);
  return per;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function keptOf(n: number, removed: ReadonlyMap<number, RemovedChannel>): number[] {
  return range(n).filter((c) => !removed.has(c));
}

/** The input columns of a consumer that read `channels`: each channel's `per` columns. */
function columnsOf(channels: readonly number[], per: number): number[] {
  return channels.flatMap((c) => range(per).map((j) => c * per + j));
}

/** The choice's geometry: each site's producers and its kept / total channels. */
export function sitesKey(model: Module, cuts: readonly SiteCut[]): string {
  const names = new Map<Module, string>([...model.namedModules()].map(([n, m]) => [m, n]));
  return cuts.map((c) => `${c.site.producers.map((p) => names.get(p) ?? '?').join('+')} ${siteWidth(c.site) - c.removed.size}/${siteWidth(c.site)}`).join(' ');
}

/** The installed views of a compacted model; dispose() takes them off and frees their index lists. */
export interface Compaction {
  /** The planner geometry ('conv1 5/8 conv2 3/8 ...'). */
  sites: string;
  /** The conv / linear layers that run smaller (their sparse layouts are never used while compacted). */
  layers: (Conv2d | Linear)[];
  dispose(): void;
}

type U32 = (a: ArrayLike<number>) => Tensor;

/** Kept positions of a parameter and their inverse (a one-dispatch gradient; tensor/ops/compact.ts inversePositions). */
interface Positions {
  idx: Tensor;
  inv: Tensor;
  shape: number[];
}

function positions(flat: readonly number[], size: number, shape: number[], u32: U32): Positions {
  return { idx: u32(flat), inv: u32(inversePositions(flat, size)), shape };
}

/** x's entries at p, on the tape: the gradient gathers back through the inverse (+0 where nothing was taken). */
function gatherParam(x: Tensor, p: Positions): Tensor {
  return record('gather_at', gatherRaw(x, p.idx, p.shape), [x], (g) => [gatherRaw(g, p.inv, x.shape)]);
}

/** What a consumer adds for a site's constant channels: their values and the columns that read them. */
interface Carry {
  /** The constants [channels], on the autograd tape. */
  value(): Tensor;
  /** Consumer input columns of the constant channels. */
  cols: number[];
  channels: number;
  /** The site's dropouts: each hands over this forward's mask on the carried columns. */
  drops: DropoutView[];
}

/**
 * Installs the views that run `cuts` compacted whenever the planner's 'compaction' choice for them is
 * 'compacted' (default); hostMask gives a prunable layer's 0/1 mask (null: not pruned).
 */
export function installCompaction(model: Module, cuts: readonly SiteCut[], hostMask: (l: Conv2d | Linear) => ArrayLike<number> | null): Compaction {
  const sites = sitesKey(model, cuts);
  const on = () => compactionChoice(sites) === 'compacted';
  // The views run on the fused paths (the planner's fused.compact), or as the separate chains.
  const fused = () => on() && compactFused(sites);
  const owned: Tensor[] = [];
  const own = (t: Tensor) => (owned.push(keep(t)), t);
  const u32 = (a: ArrayLike<number>) => own(fromArray(Uint32Array.from(a), [a.length], 'u32'));
  const outKeep = new Map<Conv2d | Linear, number[]>();
  const inKeep = new Map<Conv2d | Linear, number[]>();
  const carries = new Map<Conv2d | Linear, Carry>();
  const touched: { compact: CompactView | CompactLayerView | CompactNormView | null }[] = [];
  for (const { site, removed } of cuts) {
    if (!removed.size) continue;
    const width = siteWidth(site);
    const per = columnsPerChannel(site);
    const kept = keptOf(width, removed);
    const consts = range(width).filter((c) => removed.get(c) === 'constant');
    if (consts.length && !site.carry) throw new Error('compaction: constant channels at a site that declares no carry');
    for (const { layer, offset, n } of producerSlices(site)) {
      const mine = kept.filter((c) => c >= offset && c < offset + n).map((c) => c - offset);
      if (mine.length < n) outKeep.set(layer, mine);
    }
    const cols = columnsOf(kept, per);
    const constCols = columnsOf(consts, per);
    const source = consts.length ? constantSource(site, consts, u32) : null;
    const drops = site.dropouts.map((d) => {
      const v = dropoutView(d, cols, constCols, width * per, on, own);
      d.compact = v;
      touched.push(d);
      return v;
    });
    for (const c of site.consumers) {
      inKeep.set(c, cols);
      if (source) carries.set(c, { value: () => source.value(), cols: constCols, channels: consts.length, drops });
    }
    if (site.norm) {
      const pos = range(width).map((c) => {
        const why = removed.get(c);
        return why === 'zero' ? COMPACT_DECAY : why === 'unread' ? COMPACT_KEEP : why === 'constant' ? COMPACT_CONST + consts.indexOf(c) : kept.indexOf(c);
      });
      site.norm.compact = normView(site.norm, kept, pos, source, on, fused, u32);
      touched.push(site.norm);
    }
  }
  // A site's producer or consumer that keeps every weight (under `filter`, a layer global pruning left
  // whole) runs plain dense too, without the masked path's weight * mask.
  const whole = cuts.flatMap(({ site }) => [...site.producers, ...site.consumers]).filter((l) => {
    const m = hostMask(l);
    return m !== null && Array.prototype.every.call(m, (v: number) => v !== 0);
  });
  const layers = [...new Set([...outKeep.keys(), ...inKeep.keys(), ...whole])];
  for (const l of layers) {
    l.compact = layerView(l, outKeep.get(l) ?? null, inKeep.get(l) ?? null, carries.get(l) ?? null, hostMask(l), on, fused, u32, own);
    touched.push(l);
  }
  return {
    sites,
    layers,
    dispose() {
      for (const m of touched) m.compact = null;
      for (const t of owned) t.dispose();
    },
  };
}

/**
 * The values of a site's constant channels `consts`: v = before(producer bias, or 0); through the norm
 * (training: beta, as a batch norm maps any constant channel; eval: gamma (v - mean) / sqrt(var + eps)
 * + beta on the running statistics); then after(). `inputs(true)` gives v off the tape, for the running
 * statistics.
 */
function constantSource(site: CompactionSite, consts: number[], u32: U32): { value(): Tensor; inputs(raw: boolean): Tensor } {
  const parts = producerSlices(site)
    .map(({ layer, offset, n }) => ({ layer, local: consts.filter((c) => c >= offset && c < offset + n).map((c) => c - offset) }))
    .filter((p) => p.local.length);
  const idx = parts.map((p) => (p.layer.bias ? positions(p.local, p.layer.bias.size, [p.local.length], u32) : null));
  const normIdx = site.norm ? positions(consts, site.norm.numFeatures, [consts.length], u32) : null;
  const n = consts.length;
  const { before, after } = site.carry ?? {};
  const inputs = (raw: boolean) => {
    const pieces = parts.map((p, i) => (p.layer.bias ? (raw ? gatherRaw(p.layer.bias, idx[i]!.idx, idx[i]!.shape) : gatherParam(p.layer.bias, idx[i]!)) : fill([p.local.length], 0)));
    const v = pieces.length === 1 ? pieces[0] : F.concat(pieces, 0);
    return before ? before(v) : v;
  };
  const value = () => {
    const bn = site.norm;
    let k: Tensor;
    if (!bn) k = inputs(false);
    else {
      const beta = bn.bias ? gatherParam(bn.bias, normIdx!) : fill([n], 0);
      if (bn.training) k = beta;
      else {
        const mean = gatherRaw(bn.runningMean, normIdx!.idx, [n]);
        const std = F.sqrt(F.affine(gatherRaw(bn.runningVar, normIdx!.idx, [n]), 1, bn.eps));
        let z = F.div(F.sub(inputs(false), mean), std);
        if (bn.weight) z = F.mul(z, gatherParam(bn.weight, normIdx!));
        k = F.add(z, beta);
      }
    }
    return after ? after(k) : k;
  };
  return { value, inputs };
}

/** Flat weight positions of rows `os` and columns `is` of an [O, I, taps...] weight. */
function weightPositions(os: readonly number[], is: readonly number[], I: number, taps: number): number[] {
  const flat: number[] = [];
  for (const o of os) for (const i of is) for (let t = 0; t < taps; t++) flat.push((o * I + i) * taps + t);
  return flat;
}

/** A weight's entries at `flat`, gathered on each forward, times the layer's mask there when it prunes any. */
function gatheredWeight(l: Conv2d | Linear, flat: number[], shape: number[], mask: ArrayLike<number> | null, u32: U32, own: (t: Tensor) => Tensor): (() => Tensor) & { mask: Tensor | null } {
  // Under filter granularity a kept filter keeps every weight: the compact layer is plain dense.
  const m = mask ? Float32Array.from(flat, (k) => mask[k]) : null;
  const maskC = m && m.some((v) => v === 0) ? own(fromArray(m, shape)) : null;
  // A layer that keeps every row and column (a site's all-kept producer) reads its weight as it is.
  if (flat.length === l.weight.size && flat.every((k, i) => k === i)) return Object.assign(() => l.weight, { mask: maskC });
  const p = positions(flat, l.weight.size, shape, u32);
  return Object.assign(() => gatherParam(l.weight, p), { mask: maskC });
}

/**
 * A conv / linear on its kept output rows and input columns (all of a side when null), plus a site's
 * carried constants. biasGrad false leaves the bias's gradient to the batch norm after it (lastBias:
 * the gathered bias): the carried term does not involve this layer's bias, so the norm's per-channel
 * sum is still its gradient.
 */
function layerView(l: Conv2d | Linear, outs: number[] | null, ins: number[] | null, carry: Carry | null, mask: ArrayLike<number> | null, on: () => boolean, fused: () => boolean, u32: U32, own: (t: Tensor) => Tensor): CompactLayerView {
  const [O, I] = l.weight.shape;
  const taps = l.weight.size / (O * I);
  const os = outs ?? range(O);
  const is = ins ?? range(I);
  const spatial = l instanceof Conv2d ? l.weight.shape.slice(2) : [];
  const w = gatheredWeight(l, weightPositions(os, is, I, taps), [os.length, is.length, ...spatial], mask, u32, own);
  const wc = carry ? gatheredWeight(l, weightPositions(os, carry.cols, I, taps), [os.length, carry.cols.length, ...spatial], mask, u32, own) : null;
  const bidx = l.bias && outs ? positions(outs, O, [os.length], u32) : null;
  const kind = l instanceof Conv2d ? 'conv' : 'linear';
  let last: Tensor | null = null;
  return {
    forward(x, biasGrad = true) {
      if (!on()) return null;
      if (!biasGrad && !(l instanceof Conv2d && fused())) throw new Error('compacted layer: biasGrad false only for a conv on the fused paths');
      const b = l.bias ? (bidx ? gatherParam(l.bias, bidx) : l.bias) : null;
      last = biasGrad ? null : b;
      const opts = l instanceof Conv2d ? l.opts : {};
      const y = w.mask ? FN.prunedLayer(kind, x, w(), w.mask, null, b, opts, biasGrad) : l instanceof Conv2d ? FN.conv2d(x, w(), b, opts, biasGrad) : F.linear(x, w(), b);
      return carry && wc ? F.add(y, carried(l, x, carry, wc.mask ? F.mul(wc(), wc.mask) : wc())) : y;
    },
    fused,
    outShape(xShape) {
      const ws = [os.length, is.length, ...spatial];
      return l instanceof Conv2d ? conv2dOutputShape(xShape, ws, l.opts) : [xShape[0], os.length];
    },
    lastBias() {
      const b = last;
      last = null;
      return b;
    },
  };
}

/**
 * A consumer's term for the constant channels: conv -> its conv of a batch-1 image holding the
 * constants ([1, O, H', W'], zero padding included); linear -> the constant columns, times each
 * sample's dropout masks ([N or 1, O]).
 */
function carried(l: Conv2d | Linear, x: Tensor, c: Carry, w: Tensor): Tensor {
  const k = c.value();
  const n = c.channels;
  if (l instanceof Conv2d) {
    const [, , H, W] = x.shape;
    return FN.conv2d(F.mul(fill([1, n, H, W], 1), F.reshape(k, [1, n, 1, 1])), w, null, l.opts);
  }
  const per = c.cols.length / n;
  let cols = F.reshape(F.mul(fill([1, n, per], 1), F.reshape(k, [1, n, 1])), [1, n * per]);
  for (const d of c.drops) {
    const m = d.takeCarried();
    if (m) cols = F.mul(cols, m);
  }
  return F.linear(cols, w, null);
}

/**
 * A batch norm on the kept channels; pos: each full channel's compact index, or COMPACT_DECAY /
 * COMPACT_KEEP / COMPACT_CONST + j. `forward` runs plain batch norm (the caller chains the ReLU and
 * pool around it); forwardFused the fused kernels' ops (autograd/fused-nn.ts) on the gathered
 * parameters and statistics, which update the gathered statistics as plain batch norm does, so the
 * write-back is the same.
 */
function normView(bn: BatchNorm2d, kept: number[], pos: number[], consts: { inputs(raw: boolean): Tensor } | null, on: () => boolean, fused: () => boolean, u32: U32): CompactNormView {
  const at = positions(kept, bn.numFeatures, [kept.length], u32);
  const idx = at.idx;
  const posT = u32(pos);
  const shape = [kept.length];
  const run = (x: Tensor, norm: (gamma: Tensor | null, beta: Tensor | null, mean: Tensor, variance: Tensor) => Tensor) => {
    const gamma = bn.weight ? gatherParam(bn.weight, at) : null;
    const beta = bn.bias ? gatherParam(bn.bias, at) : null;
    const mean = gatherRaw(bn.runningMean, idx, shape);
    const variance = gatherRaw(bn.runningVar, idx, shape);
    const y = norm(gamma, beta, mean, variance);
    if (bn.training) writeBackRunning(posT, mean, variance, consts ? consts.inputs(true) : null, bn.runningMean, bn.runningVar, bn.momentum);
    return y;
  };
  return {
    forward(input, before) {
      if (!on()) return null;
      const x = before ? before(input) : input;
      return run(x, (gamma, beta, mean, variance) => FN.batchNorm2d(x, gamma, beta, mean, variance, bn.training, bn.momentum, bn.eps));
    },
    fused,
    forwardFused(x: Tensor, relu: ReluOrder | null, pool: MaxPoolArgs | null, inBias: Tensor | null) {
      if (!fused()) return null;
      return run(x, (gamma, beta, mean, variance) => {
        const args = [gamma, beta, mean, variance, bn.training, bn.momentum, bn.eps] as const;
        if (pool) return batchNormMaxPool(x, relu, ...args, pool, inBias);
        if (inBias) throw new Error('compacted batch norm: inBias needs the pool after it');
        return relu ? batchNormRelu(x, relu, ...args) : FN.batchNorm2d(x, ...args);
      });
    },
  };
}

/** A compacted dropout; takeCarried() hands over this forward's mask on the constant columns (once). */
interface DropoutView extends CompactView {
  takeCarried(): Tensor | null;
}

/** A dropout on a consumer's kept columns: the full-size mask of the same stream, gathered (and on the carried columns, kept for the consumer). */
function dropoutView(d: Dropout, cols: number[], constCols: number[], width: number, on: () => boolean, own: (t: Tensor) => Tensor): DropoutView {
  const byBatch = new Map<string, Tensor>();
  const idxFor = (which: number[], tag: string, n: number) => {
    const key = `${tag}${n}`;
    let t = byBatch.get(key);
    if (!t) {
      const flat = new Uint32Array(n * which.length);
      for (let r = 0; r < n; r++) for (let j = 0; j < which.length; j++) flat[r * which.length + j] = r * width + which[j];
      byBatch.set(key, (t = own(fromArray(flat, [flat.length], 'u32'))));
    }
    return t;
  };
  let pending: Tensor | null = null;
  return {
    forward(x) {
      if (!on()) return null;
      if (x.shape.length !== 2 || x.shape[1] !== cols.length) throw new Error(`compacted dropout: input [${x.shape.join(', ')}], expected [N, ${cols.length}]`);
      const n = x.shape[0];
      const full = dropoutMask([n, width], d.p, d.draw(n * width));
      const mask = gatherRaw(full, idxFor(cols, 'k', n), x.shape);
      pending = constCols.length ? gatherRaw(full, idxFor(constCols, 'c', n), [n, constCols.length]) : null;
      full.dispose();
      return F.dropoutWith(x, mask);
    },
    takeCarried() {
      const m = pending;
      pending = null;
      return m;
    },
  };
}

// Mask anatomy: where in a layer the pruning went, at the granularity a convolution has (filters,
// input channels, kernel taps), and how much two masks overlap. Host only and exact (integer counts).
//
// A weight of shape [out, in, kh, kw] (conv) or [out, in] (linear, kh = kw = 1) is viewed as an
// out x in grid of kh x kw kernel slices (a linear layer's columns are its inputs, not channels):
//   dead filter    an output filter (row) whose every weight is pruned: its output is the bias alone
//   dead channel   an input channel (column) no filter reads any more
//   taps           for each of the kh x kw kernel positions, the fraction of slices that keep it
// A structured compaction drops dead filters and dead channels, i.e. whole rows and columns of the
// grid; `compactable` counts the weights that removes (all of them already pruned: it is the part of the
// sparsity a dense kernel can cash in without sparse arithmetic).
import { readF32Tensors } from '../nn/checkpoint.js';
import { firstNonBinary, masksIn, type TensorsByKey } from './invariants.js';

/** Bins of the per-filter density histogram: [0] dead, then (0, 0.1], (0.1, 0.2], ..., (0.9, 1]. */
export const DENSITY_BINS = 11;

export function densityBin(d: number): number {
  return d <= 0 ? 0 : Math.min(10, Math.ceil(d * 10 - 1e-9));
}

/** A bin with its edges: `dead` (exactly 0), then `(0, 10%]`, ..., `(90, 100%]`. */
export function densityBinLabel(b: number): string {
  return b === 0 ? 'dead' : `(${(b - 1) * 10}, ${b * 10}%]`;
}

/** A bin's edges as fractions [low, high]; the dead bin is [0, 0]. */
export function densityBinEdges(b: number): [number, number] {
  return b === 0 ? [0, 0] : [(b - 1) / 10, b / 10];
}

export interface LayerAnatomy {
  key: string;
  shape: number[];
  /** 'linear' for a rank-2 weight: its columns are inputs (features), not channels. */
  kind: 'conv' | 'linear';
  filters: number;
  channels: number;
  kh: number;
  kw: number;
  total: number;
  kept: number;
  deadFilters: number;
  deadChannels: number;
  /** Filters per density bin (DENSITY_BINS entries). */
  filterHistogram: number[];
  /** kh x kw kept fraction of each kernel position over all out x in slices, row-major. */
  taps: number[];
  /** out x in kept fraction of each kernel slice, row-major: the filter-by-channel picture. */
  grid: Float32Array;
  /** Weights a structured compaction (dropping dead filters and dead channels) removes. */
  compactable: number;
}

/** The anatomy of one mask tensor of the given shape (rank 2 or 4; others are treated as [size, 1]). */
export function layerAnatomy(key: string, shape: readonly number[], mask: ArrayLike<number>): LayerAnatomy {
  const [O, I, kh, kw] = shape.length === 4 ? shape : shape.length === 2 ? [shape[0], shape[1], 1, 1] : [mask.length, 1, 1, 1];
  const k = kh * kw;
  if (O * I * k !== mask.length) throw new Error(`mask '${key}': shape [${shape.join(', ')}] does not match its ${mask.length} entries`);
  const grid = new Float32Array(O * I);
  const taps = new Array<number>(k).fill(0);
  const rowKept = new Array<number>(O).fill(0);
  const colKept = new Array<number>(I).fill(0);
  let kept = 0;
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      const base = (o * I + i) * k;
      let s = 0;
      for (let t = 0; t < k; t++) {
        if (mask[base + t] !== 0) {
          s++;
          taps[t]++;
        }
      }
      grid[o * I + i] = s / k;
      rowKept[o] += s;
      colKept[i] += s;
      kept += s;
    }
  }
  const deadFilters = rowKept.filter((v) => v === 0).length;
  const deadChannels = colKept.filter((v) => v === 0).length;
  const filterHistogram = new Array<number>(DENSITY_BINS).fill(0);
  for (const r of rowKept) filterHistogram[densityBin(r / (I * k))]++;
  return {
    key,
    shape: [...shape],
    kind: shape.length === 2 ? 'linear' : 'conv',
    filters: O,
    channels: I,
    kh,
    kw,
    total: mask.length,
    kept,
    deadFilters,
    deadChannels,
    filterHistogram,
    taps: taps.map((v) => (O * I ? v / (O * I) : 0)),
    grid,
    compactable: (deadFilters * I + deadChannels * O - deadFilters * deadChannels) * k,
  };
}

export interface MaskSet {
  masks: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
}

/** Reads `<layer>.weight_mask` tensors (ours or PyTorch's) keyed by weight, with their shapes. */
export async function readMaskSet(file: string): Promise<MaskSet> {
  const { tensors } = await readF32Tensors(file);
  const found = masksIn(tensors);
  const masks = new Map([...found].map(([k, t]) => [k, t.data]));
  const shapes = new Map([...found].map(([k, t]) => [k, t.shape]));
  if (!masks.size) throw new Error(`${file}: no <layer>.weight_mask tensors`);
  // Anatomy counts any non-zero as kept: a 0.5 (a soft or corrupted mask) would be counted silently.
  const bad = firstNonBinary(masks);
  if (bad) throw new Error(`${file}: ${bad.tensor}_mask[${bad.index}] ${bad.message}; not a pruning mask (ticketlab check names every offence)`);
  return { masks, shapes };
}

export function maskAnatomy(set: MaskSet): LayerAnatomy[] {
  return [...set.masks].map(([k, m]) => layerAnatomy(k, set.shapes.get(k) ?? [m.length], m));
}

export interface CompactionSummary {
  total: number;
  kept: number;
  pruned: number;
  /** Weights removed by dropping dead filters and channels (a subset of the pruned ones). */
  compactable: number;
  deadFilters: number;
  filters: number;
  /** Dead input channels of convolutions. */
  deadChannels: number;
  channels: number;
  /** Dead inputs of linear layers (read by no output unit). */
  deadInputs: number;
  inputs: number;
}

export function compactionSummary(layers: readonly LayerAnatomy[]): CompactionSummary {
  const sum = (f: (l: LayerAnatomy) => number) => layers.reduce((s, l) => s + f(l), 0);
  const total = sum((l) => l.total);
  const kept = sum((l) => l.kept);
  return {
    total,
    kept,
    pruned: total - kept,
    compactable: sum((l) => l.compactable),
    deadFilters: sum((l) => l.deadFilters),
    filters: sum((l) => l.filters),
    deadChannels: sum((l) => (l.kind === 'conv' ? l.deadChannels : 0)),
    channels: sum((l) => (l.kind === 'conv' ? l.channels : 0)),
    deadInputs: sum((l) => (l.kind === 'linear' ? l.deadChannels : 0)),
    inputs: sum((l) => (l.kind === 'linear' ? l.channels : 0)),
  };
}

export interface Overlap {
  key: string;
  keptA: number;
  keptB: number;
  both: number;
  either: number;
  /** |A and B| / |A or B| of the kept sets (1 when both keep nothing). */
  jaccard: number;
  /** The Jaccard index two independent random masks of these densities have on average. */
  chance: number;
  /**
   * The largest Jaccard index masks of these kept counts can have, min/max of the counts: reached when
   * one kept set holds the other. For consecutive IMP levels (nested masks) it is kept2/kept1, which is
   * what their Jaccard index must equal, so the Jaccard index is read against it, not against 1.
   */
  nested: number;
}

function overlapOf(key: string, n: number, keptA: number, keptB: number, both: number): Overlap {
  const either = keptA + keptB - both;
  const da = n ? keptA / n : 0;
  const db = n ? keptB / n : 0;
  const denom = da + db - da * db;
  const hi = Math.max(keptA, keptB);
  return { key, keptA, keptB, both, either, jaccard: either ? both / either : 1, chance: denom > 0 ? (da * db) / denom : 1, nested: hi ? Math.min(keptA, keptB) / hi : 1 };
}

/**
 * Jaccard overlap of the kept sets of two masks, per layer (the layers both have, same size) and over
 * all of them (key '(all layers)').
 */
export function maskOverlap(a: TensorsByKey, b: TensorsByKey): Overlap[] {
  const out: Overlap[] = [];
  let [n, ka, kb, both] = [0, 0, 0, 0];
  for (const [key, ma] of a) {
    const mb = b.get(key);
    if (!mb) continue;
    if (mb.length !== ma.length) throw new Error(`mask '${key}' has ${ma.length} entries in one mask and ${mb.length} in the other`);
    let [x, y, z] = [0, 0, 0];
    for (let i = 0; i < ma.length; i++) {
      const p = ma[i] !== 0;
      const q = mb[i] !== 0;
      if (p) x++;
      if (q) y++;
      if (p && q) z++;
    }
    out.push(overlapOf(key, ma.length, x, y, z));
    [n, ka, kb, both] = [n + ma.length, ka + x, kb + y, both + z];
  }
  if (!out.length) throw new Error('the two masks share no layer');
  out.push(overlapOf('(all layers)', n, ka, kb, both));
  return out;
}

// Pruning granularity: which weights are kept or pruned together (Mao et al. 2017, "Exploring the
// granularity of sparsity in CNNs"; Li et al. 2017 for filters). A unit is a set of elements of one
// prunable weight; masks stay element masks, a structured mask is one whose units are all kept or all
// pruned.
//
// Units of a weight of shape [out, in, kh, kw] (conv) or [out, in] (linear, read as kh = kw = 1):
//   weight    one element (today's unstructured pruning)
//   block:B   the B consecutive output channels [b*B, b*B + B) at one tap (in, ky, kx); the last block
//             of a tap is short when B does not divide out. Id: b * (in*kh*kw) + tap.
//   filter    all of output channel o (a conv filter, a linear layer's output neuron). Id: o.
//   channel   all weights reading input channel i (a linear layer's input feature). Id: i.
// Grouped convolutions' `in` is the per-group input; ticketlab's detectors have none.

import { ArgumentError, choices } from '../util/errors.js';

export const GRANULARITIES = ['weight', 'block:4', 'block:8', 'block:16', 'channel', 'filter'] as const;

export type Granularity = (typeof GRANULARITIES)[number];

export function isGranularity(s: string): s is Granularity {
  return (GRANULARITIES as readonly string[]).includes(s);
}

/**
 * Parses `weight|block:B|channel|filter` (B in 4, 8, 16). A library error names `fn` and `arg`
 * (util/errors.ts); the CLI words it as the --granularity flag (cli/errors.ts).
 */
export function parseGranularity(s: string, fn = 'parseGranularity', arg = 'spec'): Granularity {
  if (isGranularity(s)) return s;
  throw new ArgumentError(fn, arg, `'${s}' is not one of ${choices(GRANULARITIES)}`);
}

/** The granularity a config records: absent means 'weight' (runs made before granularities existed). */
export function granularityOf(c: { granularity?: Granularity }): Granularity {
  return c.granularity ?? 'weight';
}

/** A folder-name-safe tag: `block:8` -> `block8`. */
export function granularityTag(g: Granularity): string {
  return g.replace(':', '');
}

/** The block size of `block:B`, else null. */
export function blockSize(g: Granularity): number | null {
  return g.startsWith('block:') ? Number(g.slice('block:'.length)) : null;
}

/** The units of one weight: element -> unit id, and each unit's element count. */
export interface UnitLayout {
  units: number;
  /** unitOf[i]: the unit of element i (flat, row-major over [out, in, kh, kw]). */
  unitOf: Int32Array;
  /** Elements per unit. */
  size: Int32Array;
  /** The largest unit (0 for an empty weight). */
  maxSize: number;
}

/** [out, in, taps] of a conv ([out, in, kh, kw]) or linear ([out, in]) weight; errors name `key`. */
export function weightDims(shape: readonly number[], key = 'weight'): { out: number; inC: number; taps: number } {
  if (shape.length !== 2 && shape.length !== 4) throw new Error(`'${key}' has shape [${shape.join(', ')}]; structured pruning needs a conv [out, in, kh, kw] or linear [out, in] weight`);
  return { out: shape[0], inC: shape[1], taps: shape.length === 4 ? shape[2] * shape[3] : 1 };
}

/** The unit layout of a weight under a granularity (cached: layouts are pure functions of both). */
export function unitLayout(shape: readonly number[], g: Granularity, key = 'weight'): UnitLayout {
  const id = `${g}|${shape.join('x')}`;
  let l = layouts.get(id);
  if (!l) {
    l = makeLayout(shape, g, key);
    layouts.set(id, l);
  }
  return l;
}

const layouts = new Map<string, UnitLayout>();

function makeLayout(shape: readonly number[], g: Granularity, key: string): UnitLayout {
  const n = shape.reduce((a, b) => a * b, 1);
  const unitOf = new Int32Array(n);
  if (g === 'weight') {
    for (let i = 0; i < n; i++) unitOf[i] = i;
    return { units: n, unitOf, size: new Int32Array(n).fill(1), maxSize: n ? 1 : 0 };
  }
  const { out, inC, taps } = weightDims(shape, key);
  const perOut = inC * taps;
  const B = blockSize(g);
  const units = g === 'filter' ? out : g === 'channel' ? inC : Math.ceil(out / B!) * perOut;
  const size = new Int32Array(units);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inC; i++) {
      for (let t = 0; t < taps; t++) {
        const e = (o * inC + i) * taps + t;
        const u = g === 'filter' ? o : g === 'channel' ? i : Math.floor(o / B!) * perOut + i * taps + t;
        unitOf[e] = u;
        size[u]++;
      }
    }
  }
  return { units, unitOf, size, maxSize: size.reduce((a, b) => Math.max(a, b), 0) };
}

/** Where a unit sits, for messages: `block (out 8..15, in 3, ky 1, kx 2)`, `filter 5`, `channel 2`. */
export function describeUnit(shape: readonly number[], g: Granularity, u: number): string {
  if (g === 'weight') return `element ${u}`;
  if (g === 'filter') return `filter ${u}`;
  if (g === 'channel') return `input channel ${u}`;
  const { out, inC, taps } = weightDims(shape);
  const B = blockSize(g)!;
  const perOut = inC * taps;
  const b = Math.floor(u / perOut);
  const tap = u % perOut;
  const i = Math.floor(tap / taps);
  const t = tap % taps;
  const kw = shape.length === 4 ? shape[3] : 1;
  const hi = Math.min(out, (b + 1) * B) - 1;
  return `block ${u} (out ${b * B}..${hi}, in ${i}${shape.length === 4 ? `, ky ${Math.floor(t / kw)}, kx ${t % kw}` : ''})`;
}

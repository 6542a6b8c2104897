// The pruning vocabulary shared by the API, the CLI and the reports: the scope a threshold is taken
// over and the granularity at which weights are removed. One place, so the flags, the prune() options
// and the sweep config cannot drift apart.
import { ArgumentError, choices } from '../util/errors.js';

export type { Scope } from './magnitude.js';

/** Block sizes that the block granularity accepts (kh x kw taps are grouped along the input axis). */
export const BLOCK_SIZES = [4, 8, 16] as const;
export type BlockSize = (typeof BLOCK_SIZES)[number];

/**
 * What one pruning decision removes: a single weight; a block of 4, 8 or 16 consecutive weights of a
 * row; a whole input channel (linear: an input); or a whole filter (an output row).
 */
export type Granularity = 'weight' | `block:${BlockSize}` | 'channel' | 'filter';

export const GRANULARITIES: readonly Granularity[] = ['weight', ...BLOCK_SIZES.map((b) => `block:${b}` as const), 'channel', 'filter'];

export function isGranularity(s: string): s is Granularity {
  return (GRANULARITIES as readonly string[]).includes(s);
}

/** `s` as a Granularity, or an error naming `fn` and `arg`. */
export function parseGranularity(s: string, fn = 'parseGranularity', arg = 'spec'): Granularity {
  if (!isGranularity(s)) throw new ArgumentError(fn, arg, `'${s}' is not one of ${choices(GRANULARITIES)}`);
  return s;
}

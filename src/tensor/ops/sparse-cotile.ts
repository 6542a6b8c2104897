// The blocked layout by output-channel block, cut into tiles of input channels: what the co-tile input
// gradient (src/shaders/sparse-strip.ts sparseStripCoTileKernel) walks. Built on the host once per
// mask (SparseWeight.coTiles), like the other layouts.
//
// Why a second layout for the input gradient: the by-input-block layout lists a tap when any of 8 input
// channels keeps it, which under block:8 masks (output channels grouped) is most taps at any density.
// Grouped by output block instead, a tile's list holds exactly the kept blocks, so the kernel's FMAs
// fall with density.
import type { Shape } from '../tensor.js';

/** Output channels per block of the co-tile layout (the blocked layout's BN). */
export const COTILE_BN = 8;

/** Host form of the co-tile layout (see sparseStripCoTileKernel for the kernel's reading of it). */
export interface CoTilesHost {
  /** Input channels per tile. */
  ct: number;
  tiles: number;
  /** Per tile, its first group: groups of tile t are tptr[t] .. tptr[t + 1]. */
  tptr: Uint32Array;
  /** Pairs (g << 8 | ky, first entry), closed by a sentinel pair (0, entries). */
  groups: Uint32Array;
  /** Per kept block: cl * KW + kx (cl: input channel within the tile). */
  ents: Uint32Array;
  /** Per entry, 8 flat indices into the dense weight (one per channel of the block), `none` where padded. */
  idx: Uint32Array;
}

/**
 * Lists, per tile of `ct` input channels and per (output block g, ky) in that order, the (ci, kx) whose
 * block any of the 8 output channels keeps; `none` marks a padded value slot.
 */
export function buildCoTiles(mask: ArrayLike<number>, wShape: Shape, ct: number, none: number): CoTilesHost {
  const [cout, cin, kh, kw] = wShape;
  if (kh > 255 || cout > (1 << 24) * COTILE_BN) throw new Error(`sparse co-tile layout: weight [${wShape.join(', ')}] exceeds the packed group format`);
  const khw = kh * kw;
  const tiles = Math.ceil(cin / ct);
  const nb = Math.ceil(cout / COTILE_BN);
  const tptr = new Uint32Array(tiles + 1);
  const groups: number[] = [];
  const ents: number[] = [];
  const idx: number[] = [];
  for (let t = 0; t < tiles; t++) {
    tptr[t] = groups.length / 2;
    for (let g = 0; g < nb; g++) {
      for (let ky = 0; ky < kh; ky++) {
        const first = ents.length;
        for (let cl = 0; cl < ct && t * ct + cl < cin; cl++) {
          const ci = t * ct + cl;
          for (let kx = 0; kx < kw; kx++) {
            const at = (co: number) => (co * cin + ci) * khw + ky * kw + kx;
            let any = false;
            for (let j = 0; j < COTILE_BN && g * COTILE_BN + j < cout; j++) if (mask[at(g * COTILE_BN + j)]) any = true;
            if (!any) continue;
            ents.push(cl * kw + kx);
            for (let j = 0; j < COTILE_BN; j++) {
              const co = g * COTILE_BN + j;
              idx.push(co < cout && mask[at(co)] ? at(co) : none);
            }
          }
        }
        if (ents.length > first) groups.push(((g << 8) | ky) >>> 0, first);
      }
    }
  }
  tptr[tiles] = groups.length / 2;
  groups.push(0, ents.length);
  return { ct, tiles, tptr, groups: Uint32Array.from(groups), ents: Uint32Array.from(ents), idx: Uint32Array.from(idx) };
}

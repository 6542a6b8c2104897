// toCHWBytes' WebAssembly passes (src/data/resize-wasm.ts) against its JavaScript passes, the ones the
// float path pins (tests/data/image.test.ts runs those tests on the default engine, the WebAssembly one):
// the same bytes on random images, sizes (shrinking by large and non-integer factors, enlarging),
// regions, and saturated images, and the assembled module is a valid one.
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { setResizeEngine, toCHWBytes, type RgbImage } from '../../src/data/image.js';
import { resizeModuleBytes } from '../../src/data/resize-wasm.js';

const RUNS = Number(process.env.TICKETLAB_FUZZ_RUNS ?? 60);

afterEach(() => setResizeEngine('wasm'));

function image(w: number, h: number, seed: number, levels: 'noise' | 'extremes'): RgbImage {
  const data = new Uint8Array(w * h * 3);
  let s = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = levels === 'noise' ? s >>> 24 : (s >>> 31) * 255;
  }
  return { width: w, height: h, channels: 3, data };
}

function both(img: RgbImage, size: number, region?: { left: number; top: number; width: number; height: number }): [Buffer, Buffer] {
  setResizeEngine('js');
  const js = Buffer.from(toCHWBytes(img, size, undefined, region));
  setResizeEngine('wasm');
  const wasm = Buffer.from(toCHWBytes(img, size, undefined, region));
  return [js, wasm];
}

describe('the WebAssembly resize', () => {
  it('assembles a module the engine accepts', () => {
    const wasm = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly;
    expect(wasm.validate(resizeModuleBytes())).toBe(true);
  });

  it('gives the JavaScript passes\' bytes on random images, sizes and regions', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 96 }), fc.nat(), fc.constantFrom('noise' as const, 'extremes' as const),
        fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(),
        (w, h, size, seed, levels, fl, ft, fw, fh, crop) => {
          const img = image(w, h, seed, levels);
          const left = Math.floor(fl * (w - 1)), top = Math.floor(ft * (h - 1));
          const region = crop ? { left, top, width: 1 + Math.floor(fw * (w - left - 1)), height: 1 + Math.floor(fh * (h - top - 1)) } : undefined;
          const [js, wasm] = both(img, size, region);
          expect(wasm.equals(js)).toBe(true);
        }),
      { numRuns: RUNS },
    );
  });

  it('gives the JavaScript passes\' bytes for 320 px faces at 64, 97, 128 and 256 px, and for a 1000x700 photo', () => {
    for (const [w, h] of [[320, 320], [1000, 700]]) {
      for (const size of [64, 97, 128, 256]) {
        const [js, wasm] = both(image(w, h, size, 'noise'), size);
        expect(wasm.equals(js), `${w}x${h} -> ${size}`).toBe(true);
      }
    }
  });
});

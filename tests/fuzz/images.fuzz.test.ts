// Fuzz: corrupt image files (truncated, bit-flipped, headers claiming huge sizes, other formats, random
// bytes). Decoding gives a well-formed RGB image or an UnreadableImageError naming the file, which the
// loader turns into a documented skip (a warning naming the file), never a crash or a hang.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { UnreadableImageError, decodeImage, decodeImageBuffer, encodePng } from '../../src/data/image.js';
import { expectOneLineError, fuzzRuns, fuzzSeed, withinMs, fuzzTimeout } from './fuzz-util.js';

const img = { width: 12, height: 9, channels: 3 as const, data: Uint8Array.from({ length: 12 * 9 * 3 }, (_, i) => (i * 37) % 256) };

describe('fuzz: corrupt images', () => {
  it('decode gives a consistent image or a one-line UnreadableImageError naming the source', async () => {
    const png = await encodePng(img);
    const jpg = await sharp(Buffer.from(img.data), { raw: { width: 12, height: 9, channels: 3 } }).jpeg().toBuffer();
    const gif = await sharp(Buffer.from(img.data), { raw: { width: 12, height: 9, channels: 3 } }).gif().toBuffer();
    const base = fc.constantFrom(png, jpg, gif);
    const bytes = fc.oneof(
      fc.tuple(base, fc.double({ min: 0, max: 1, noNaN: true })).map(([b, f]) => b.subarray(0, Math.floor(b.length * f))),
      fc.tuple(base, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })).map(([b, flips]) => {
        const c = Buffer.from(b);
        for (const [i, v] of flips) c[i % c.length] = v;
        return c;
      }),
      // PNG IHDR width/height (bytes 16..23) set to anything, up to 2^31-1: a decompression bomb's header
      fc.tuple(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 2 ** 31 - 1 })).map(([w, h]) => {
        const c = Buffer.from(png);
        c.writeUInt32BE(w, 16);
        c.writeUInt32BE(h, 20);
        return c;
      }),
      fc.uint8Array({ maxLength: 256 }),
    );
    let ok = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(bytes, async (b) => {
        try {
          const out = await withinMs(10_000, 'decode', decodeImageBuffer(b, 'x.png'));
          expect(out.data.length).toBe(out.width * out.height * 3);
          ok++;
        } catch (e) {
          expect(e).toBeInstanceOf(UnreadableImageError);
          expectOneLineError(e);
          expect((e as Error).message.startsWith('cannot read image x.png: ')).toBe(true);
          refused++;
        }
      }),
      { numRuns: fuzzRuns(150), seed: fuzzSeed },
    );
    expect(refused).toBeGreaterThan(0);
    expect(ok + refused).toBe(fuzzRuns(150));
  }, fuzzTimeout);

  it('a file that is missing, a folder, or empty is an UnreadableImageError naming it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-img-'));
    fs.writeFileSync(path.join(dir, 'empty.png'), '');
    fs.mkdirSync(path.join(dir, 'folder.png'));
    for (const f of ['empty.png', 'folder.png', 'missing.png']) {
      const e = await decodeImage(path.join(dir, f)).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(UnreadableImageError);
      expectOneLineError(e);
      expect((e as Error).message).toContain(path.join(dir, f));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }, fuzzTimeout);
});

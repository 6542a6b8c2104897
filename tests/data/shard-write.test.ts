// How the first pass writes shards without copying its images: a vectored atomic write gives the
// file its pieces would make joined, a shard written from the images and their worker-made checksums
// is byte for byte the one encodeShard makes, and the checksum a decode worker sends with an image is
// the CRC-32 of its bytes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { writeFileAtomic } from '../../src/io/atomic.js';
import { encodeShard, SHARD_EXT, ShardCache, shardParts, type ShardItem } from '../../src/data/shard-cache.js';
import { crc32 } from '../../src/data/crc32.js';
import { DecodePool } from '../../src/data/decode-pool.js';
import { writePng, type BoxCrop } from '../../src/data/image.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-shard-write-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('writing shards from the images themselves', () => {
  it('writeFileAtomic of pieces writes what the joined pieces are', async () => {
    let k = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }), async (parts) => {
        const file = path.join(dir, `parts-${k++}.bin`);
        await writeFileAtomic(file, parts);
        expect(Buffer.from(fs.readFileSync(file)).equals(Buffer.concat(parts))).toBe(true);
        // Nothing but the target is left behind (no temp file).
        expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
      }),
      { numRuns: 40 },
    );
  });

  it('writeFileAtomic of pieces larger than one writev takes (several calls, a piece alone) writes them all in order', async () => {
    const sizes = [1_500_000, 3_000_000, 9_000_000, 17, 2_500_000, 2_500_000];
    const parts = sizes.map((n, k) => new Uint8Array(n).map((_, j) => (j * 7 + k * 61) & 255));
    const file = path.join(dir, 'large.bin');
    await writeFileAtomic(file, parts);
    expect(Buffer.from(fs.readFileSync(file)).equals(Buffer.concat(parts))).toBe(true);
  });

  it('a shard written from queued images is the bytes encodeShard makes of them, with or without their checksums', async () => {
    const S = 5;
    const per = 3 * S * S;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: per, maxLength: per }), { minLength: 1, maxLength: 7 }), fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }), async (images, known) => {
        const root = fs.mkdtempSync(path.join(dir, 'c-'));
        const cache = new ShardCache(root, { size: S, pipeline: 'shard-write-test' }, (m) => {
          throw new Error(m);
        });
        images.forEach((px, i) => {
          const src = { rel: `img-${i}.png`, bytes: 100 + i, mtimeMs: 1000 + i };
          cache.add(src, px, known[i] ? { key: cache.keyOf(src), crc: crc32(px) } : {});
        });
        await cache.flush();
        const [shard] = fs.readdirSync(cache.dir).filter((n) => n.endsWith(SHARD_EXT));
        const items: ShardItem[] = images.map((px, i) => {
          const src = { rel: `img-${i}.png`, bytes: 100 + i, mtimeMs: 1000 + i };
          return { key: cache.keyOf(src), path: '', pixels: px };
        });
        const onDisk = fs.readFileSync(path.join(cache.dir, shard));
        // Path keys are the cache's own: take them from the file, then rebuild the whole of it.
        items.forEach((it, i) => (it.path = onDisk.subarray(40 + 32 * i + 16, 40 + 32 * i + 24).toString('hex')));
        expect(onDisk.equals(encodeShard(S, cache.cfgKey, items))).toBe(true);
        expect(Buffer.concat(shardParts(S, cache.cfgKey, items)).equals(onDisk)).toBe(true);
        // And it reads back: each image's bytes, their checksums checked on this first read.
        cache.rescan();
        const out = new Uint8Array(per);
        images.forEach((px, i) => {
          expect(cache.readInto(items[i].key, out, 0)).toBe(true);
          expect(Buffer.from(out).equals(Buffer.from(px))).toBe(true);
        });
        cache.close();
      }),
      { numRuns: 15 },
    );
  });

  it("a decode worker's checksum is the CRC-32 of the image it sends (none for box crops)", async () => {
    const file = path.join(dir, 'img.png');
    await writePng(file, { width: 23, height: 17, channels: 3, data: new Uint8Array(23 * 17 * 3).map((_, j) => (j * 31) % 256) });
    const pool = new DecodePool(1);
    try {
      const d = await pool.decodeChecked(file, 9);
      expect(d.crc).toBe(crc32(d.pixels));
      expect(Buffer.from(d.pixels).equals(Buffer.from(await pool.decode(file, 9)))).toBe(true);
      const boxes: BoxCrop[] = [{ box: [2, 3, 9, 8], scale: 1 }];
      expect((await pool.decodeChecked(file, 9, boxes)).crc).toBeUndefined();
    } finally {
      await pool.close();
    }
  });
});

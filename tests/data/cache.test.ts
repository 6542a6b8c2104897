// The decoded cache in use: the first epoch fills it, later epochs read it (no decode), the bytes are
// the decode's, two writers at once leave a complete cache, and a training run gives the same weights
// with the cache as with --no-cache.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { writePng } from '../../src/data/image.js';
import { openDataset } from '../../src/data/datasets.js';
import { closeShardCaches, isPixelDataset } from '../../src/data/decoded.js';
import { DataLoader } from '../../src/data/loader.js';
import fc from 'fast-check';
import { encodeShard, ShardCache, SHARD_EXT, type SourceId } from '../../src/data/shard-cache.js';
import { parseMemoryBudget, setShardMemoryBudget, shardMemoryRoom, shardMemoryUsed } from '../../src/data/shard-memory.js';

const BIN = path.resolve(__dirname, '../../bin/ticketlab.mjs');

async function folder(perClass: number, splits = ['train']): Promise<string> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-cache-'));
  let k = 0;
  for (const split of splits) {
    for (const cls of ['real', 'fake']) {
      for (let i = 0; i < perClass; i++, k++) {
        const w = 24 + (k % 9), h = 20 + (k % 7);
        const shade = cls === 'fake' ? 60 : 0;
        await writePng(path.join(root, split, cls, `v${k}_${i}.png`), { width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).map((_, j) => (j * 13 + k * 29 + shade) % 256) });
      }
    }
  }
  return root;
}

async function epochs(root: string, cache: boolean, n: number): Promise<{ batches: Uint8Array[][]; hits: number }> {
  closeShardCaches();
  const d = await openDataset(root, { size: 12, decodedCache: cache, warn: () => undefined });
  const loader = new DataLoader(d.train, { batchSize: 5, seed: 3, flip: true });
  const batches: Uint8Array[][] = [];
  for (let e = 0; e < n; e++) {
    const per: Uint8Array[] = [];
    for await (const b of loader.epoch(e)) per.push(b.pixels!.data.slice());
    batches.push(per);
  }
  const ds = d.train;
  return { batches, hits: isPixelDataset(ds) && ds.cache ? ds.cache.hits : 0 };
}

describe('the decoded cache', () => {
  it('is filled by the first epoch and read by the later ones, with the bytes a fresh decode gives', async () => {
    const root = await folder(8);
    try {
      const off = await epochs(root, false, 3);
      expect(fs.existsSync(path.join(root, '.ticketlab-cache'))).toBe(false);
      const on = await epochs(root, true, 3);
      expect(on.batches).toEqual(off.batches);
      const n = on.batches[0].reduce((s, b) => s + b.length / (3 * 12 * 12), 0);
      // Epoch 0 decoded everything; epochs 1 and 2 read every image from the shards.
      expect(on.hits).toBe(2 * Math.floor(n));
      // A later process reads every image from disk.
      const again = await epochs(root, true, 1);
      expect(again.hits).toBe(Math.floor(n));
      expect(again.batches[0]).toEqual(off.batches[0]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('FaceForensics++ frames are cached per (source, frame) and crop mode, and served as a fresh read gives them', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-cache-ffpp-'));
    try {
      let k = 0;
      for (const dir of ['original_sequences/youtube/c23/images/000', 'original_sequences/youtube/c23/images/001', 'manipulated_sequences/Deepfakes/c23/images/000_001', 'manipulated_sequences/Deepfakes/c23/images/001_000']) {
        for (let f = 0; f < 3; f++, k++) {
          await writePng(path.join(root, dir, `${String(f).padStart(4, '0')}.png`), { width: 30, height: 20, channels: 3, data: new Uint8Array(1800).map((_, j) => (j * 7 + k * 41) % 256) });
        }
      }
      const open = (decodedCache: boolean) => {
        closeShardCaches();
        return openDataset(root, { size: 8, crop: 'centre', decodedCache, faceforensics: { framesPerVideo: 2 }, warn: () => undefined });
      };
      const off = await open(false);
      const want = [];
      for (let i = 0; i < off.train.length(); i++) want.push(Array.from((await off.train.get(i)).pixels!));
      const on = await open(true);
      const read = async () => {
        const got = [];
        for (let i = 0; i < on.train.length(); i++) got.push(Array.from((await on.train.get(i)).pixels!));
        if (isPixelDataset(on.train)) await on.train.flushCache();
        return got;
      };
      expect(await read()).toEqual(want);
      const ds = on.train;
      expect(isPixelDataset(ds) && ds.cache).toBeTruthy();
      const hitsBefore = isPixelDataset(ds) ? ds.cache!.hits : 0;
      expect(await read()).toEqual(want);
      expect((isPixelDataset(ds) ? ds.cache!.hits : 0) - hitsBefore).toBe(ds.length());
      // Each frame of a video is its own entry: the frames differ, so their bytes do.
      expect(new Set(want.map((w) => w.join(','))).size).toBe(want.length);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('two writers filling one cache at once leave it complete and correct', async () => {
    const root = await folder(20);
    try {
      const run = () => new Promise<number>((resolve) => {
        const c = spawn(process.execPath, [BIN, 'prepare', '--data', root, '--size', '12', '--quiet'], { stdio: 'ignore' });
        c.once('exit', (code) => resolve(code ?? -1));
      });
      expect(await Promise.all([run(), run()])).toEqual([0, 0]);
      const third = spawnSync(process.execPath, [BIN, 'prepare', '--data', root, '--size', '12', '--quiet'], { encoding: 'utf8' });
      expect(third.status, third.stderr).toBe(0);
      expect(third.stdout).toMatch(/40 images, 0 decoded now, 40 already cached/);
      const off = await epochs(root, false, 1);
      const on = await epochs(root, true, 1);
      expect(on.hits).toBe(off.batches[0].reduce((s, b) => s + b.length / (3 * 12 * 12), 0));
      expect(on.batches).toEqual(off.batches);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);

  it('a training run gives the same weights and metrics with the cache (cold, then warm) as with --no-cache', async () => {
    const root = await folder(6, ['train', 'val', 'test']);
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-cache-runs-'));
    try {
      const train = (name: string, ...extra: string[]) => {
        const r = spawnSync(process.execPath, [BIN, 'train', '--model', 'cnn5', '--data', root, '--size', '32', '--epochs', '2', '--batch', '4', '--quiet', '--out', path.join(out, name), ...extra], { encoding: 'utf8' });
        expect(r.status, r.stderr).toBe(0);
        return {
          weights: fs.readFileSync(path.join(out, name, 'level_0', 'final.safetensors')),
          test: (JSON.parse(fs.readFileSync(path.join(out, name, 'level_0', 'result.json'), 'utf8')) as { test: unknown }).test,
        };
      };
      const plain = train('plain', '--no-cache');
      expect(fs.existsSync(path.join(root, '.ticketlab-cache'))).toBe(false);
      const cold = train('cold', '--cache', path.join(out, 'cache'));
      expect(fs.readdirSync(path.join(out, 'cache', 'decoded')).length).toBe(1);
      const warm = train('warm', '--cache', path.join(out, 'cache'));
      expect(cold.weights.equals(plain.weights)).toBe(true);
      expect(warm.weights.equals(plain.weights)).toBe(true);
      expect(warm.test).toEqual(plain.test);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 300_000);

  describe('shards held in memory', () => {
    const S = 4;
    const PER = 3 * S * S;
    const cfg = { size: S, pipeline: 'test;memory' };
    const src = (i: number): SourceId => ({ rel: `img_${i}.png`, bytes: 100 + i, mtimeMs: 1_700_000_000_000 + i });
    const pixelsOf = (i: number, salt: number): Uint8Array => new Uint8Array(PER).map((_, j) => (j * 17 + i * 31 + salt * 7) & 255);

    /** A cache folder with one shard of `count` images, written through a ShardCache (as a run does). */
    async function filled(count: number): Promise<{ dir: string; shard: string; warnings: string[]; cache: ShardCache }> {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-cache-mem-'));
      const warnings: string[] = [];
      const w = new ShardCache(dir, cfg, (m) => warnings.push(m));
      for (let i = 0; i < count; i++) w.add(src(i), pixelsOf(i, 0));
      await w.flush();
      w.close();
      const cache = new ShardCache(dir, cfg, (m) => warnings.push(m));
      const shardDir = cache.dir;
      const shard = path.join(shardDir, fs.readdirSync(shardDir).find((n) => n.endsWith(SHARD_EXT))!);
      return { dir, shard, warnings, cache };
    }

    const read = (c: ShardCache, i: number): Uint8Array | null => {
      const out = new Uint8Array(PER);
      return c.readInto(c.keyOf(src(i)), out, 0, `img_${i}.png`) ? out : null;
    };

    it('a warm read is a copy from memory within the budget, per entry from disk without one, with the same bytes', async () => {
      for (const budget of [0, null]) {
        setShardMemoryBudget(budget);
        // Other caches of this process (earlier tests) may hold shards: the count is relative.
        const before = shardMemoryUsed();
        const { dir, cache } = await filled(6);
        try {
          for (let round = 0; round < 2; round++) for (let i = 0; i < 6; i++) expect(read(cache, i)).toEqual(pixelsOf(i, 0));
          expect(cache.hits).toBe(12);
          expect(cache.memoryHits).toBe(budget === 0 ? 0 : 12);
          expect(cache.memoryBytes > 0).toBe(budget !== 0);
          expect(shardMemoryUsed() - before).toBe(cache.memoryBytes);
          cache.close();
          expect(shardMemoryUsed()).toBe(before);
        } finally {
          setShardMemoryBudget(null);
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
    });

    it('a shard rebuilt on disk (another file in its place, other bytes) is read afresh at the next rescan, never served from the old copy', async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 250 }), fc.boolean(), async (count, salt, inPlace) => {
          const { dir, shard, warnings, cache } = await filled(count);
          try {
            for (let i = 0; i < count; i++) expect(read(cache, i)).toEqual(pixelsOf(i, 0));
            expect(cache.memoryHits).toBe(count);
            // The same keys with other pixels (valid checksums): a rebuild, by rename or written over.
            const items = Array.from({ length: count }, (_, i) => ({ key: cache.keyOf(src(i)), path: '', pixels: pixelsOf(i, salt) }));
            const old = fs.readFileSync(shard);
            const rebuilt = encodeShard(S, cache.cfgKey, items.map((it, i) => ({ ...it, path: old.subarray(40 + i * 32 + 16, 40 + i * 32 + 24).toString('hex') })));
            if (inPlace) {
              fs.writeFileSync(shard, rebuilt);
              // A later mtime, as a rewrite a moment later has (the clock's resolution aside).
              const t = fs.statSync(shard).mtimeMs / 1000 + 5;
              fs.utimesSync(shard, t, t);
            } else {
              fs.writeFileSync(`${shard}.new`, rebuilt);
              fs.renameSync(`${shard}.new`, shard);
            }
            cache.rescan();
            for (let i = 0; i < count; i++) expect(read(cache, i)).toEqual(pixelsOf(i, salt));
            expect(warnings).toEqual([]);
          } finally {
            cache.close();
            fs.rmSync(dir, { recursive: true, force: true });
          }
        }),
        { numRuns: 12 },
      );
    });

    it('a flipped bit is caught on the first read through memory, and again after a held shard is damaged on disk', async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 5 }), fc.nat(), fc.integer({ min: 0, max: 7 }), fc.boolean(), async (count, at, bit, afterWarm) => {
          const { dir, shard, warnings, cache } = await filled(count);
          try {
            const victim = at % count;
            if (afterWarm) for (let i = 0; i < count; i++) expect(read(cache, i)).toEqual(pixelsOf(i, 0));
            const f = fs.readFileSync(shard);
            const pixelsAt = 40 + count * 32 + victim * PER + ((at >> 3) % PER);
            f[pixelsAt] ^= 1 << bit;
            fs.writeFileSync(shard, f);
            const t = fs.statSync(shard).mtimeMs / 1000 + 5;
            fs.utimesSync(shard, t, t);
            if (afterWarm) cache.rescan();
            // Read every entry: the damaged one is named (never served), and the shard is dropped.
            const got = Array.from({ length: count }, (_, i) => read(cache, i));
            expect(got.every((g, i) => g === null || g.every((v, j) => v === pixelsOf(i, 0)[j]))).toBe(true);
            expect(got[victim]).toBeNull();
            expect(warnings.join('\n')).toMatch(new RegExp(`image ${victim + 1} of ${count} \\(img_${victim}\\.png\\) fails its checksum`));
            expect(cache.memoryBytes).toBe(0);
          } finally {
            cache.close();
            fs.rmSync(dir, { recursive: true, force: true });
          }
        }),
        { numRuns: 16 },
      );
    });

    it('a shard removed from disk is forgotten at the next rescan (its images are misses, decoded afresh)', async () => {
      const { dir, shard, cache } = await filled(3);
      try {
        expect(read(cache, 1)).toEqual(pixelsOf(1, 0));
        fs.rmSync(shard);
        cache.rescan();
        expect(read(cache, 1)).toBeNull();
        expect(cache.memoryBytes).toBe(0);
      } finally {
        cache.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('the budget reads bytes, binary suffixes and percentages of RAM, and names the variable for anything else', () => {
      expect(parseMemoryBudget('0')).toBe(0);
      expect(parseMemoryBudget('512M')).toBe(512 * 2 ** 20);
      expect(parseMemoryBudget('1.5GiB')).toBe(1.5 * 2 ** 30);
      expect(parseMemoryBudget('2g')).toBe(2 * 2 ** 30);
      expect(parseMemoryBudget('100%')).toBe(os.totalmem());
      expect(() => parseMemoryBudget('lots')).toThrow(/^TICKETLAB_CACHE_MEM=lots: expected bytes/);
      expect(() => parseMemoryBudget('150%')).toThrow(/TICKETLAB_CACHE_MEM=150%/);
      expect(() => setShardMemoryBudget(-1)).toThrow(/byte count >= 0/);
      // A set budget is the only limit: room up to it, none past it.
      try {
        setShardMemoryBudget(shardMemoryUsed() + 1000);
        expect(shardMemoryRoom(1000)).toBe(true);
        expect(shardMemoryRoom(1001)).toBe(false);
        setShardMemoryBudget(0);
        expect(shardMemoryRoom(1)).toBe(false);
      } finally {
        setShardMemoryBudget(null);
      }
    });
  });
});

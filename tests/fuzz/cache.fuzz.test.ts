// Fuzz: the decoded cache under damage and faults. Each case is detected and named in one line, then
// decoded afresh or rebuilt; what is served always equals a fresh decode of the file as it is now
// (nothing stale), and shards written before a fault are still read afterwards (nothing finished lost):
//   - a truncated shard, and a shard of another format version;
//   - a bit flipped in a shard's pixels (the entry's checksum) or in its index (the index's);
//   - a source image changed, or deleted, after caching;
//   - a cache folder that cannot be written (EROFS), falling back to decoding with a warning;
//   - a full disk while writing a shard (ENOSPC);
//   - a kill -9 while writing: a writer's half-written temp file is never read, and the rerun
//     completes the cache (a real `ticketlab prepare` killed at a random moment, then run again).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { decodeImage, toCHWBytes, writePng, UnreadableImageError } from '../../src/data/image.js';
import { configKey, ShardCache, SHARD_EXT, SHARD_FORMAT_VERSION } from '../../src/data/shard-cache.js';
import { CachedDecoder, closeShardCaches, RESIZE_METHOD } from '../../src/data/decoded.js';
import { openDataset } from '../../src/data/datasets.js';
import { expectOneLineError, fuzzRuns, fuzzSeed, fuzzTimeout, withinMs } from './fuzz-util.js';
import { TEMP_HOST } from '../../src/io/atomic.js';

const S = 8;
const PER = 3 * S * S;
const BIN = path.resolve(__dirname, '../../bin/ticketlab.mjs');

async function imageFile(file: string, seed: number): Promise<void> {
  const w = 11 + (seed % 7), h = 9 + (seed % 5);
  await writePng(file, { width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).map((_, j) => (j * 37 + seed * 101) % 256) });
}

async function folder(n: number): Promise<{ root: string; files: string[] }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-cache-fuzz-'));
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = path.join(root, 'train', i % 2 ? 'fake' : 'real', `img_${i}.png`);
    await imageFile(f, i);
    files.push(f);
  }
  return { root, files };
}

type Writer = (file: string, data: Uint8Array) => Promise<void>;

// Caches this file opened; a ShardCache keeps its shards open for reading, so each case closes them
// (at TICKETLAB_FUZZ_RUNS=4000 the open shards of earlier cases ran the process out of descriptors).
const opened = new Set<ShardCache>();

/** A fresh process's view of the cache: a new index read from disk. */
function decoder(root: string, warnings: string[], write?: Writer): CachedDecoder {
  const warn = (m: string): void => void warnings.push(m);
  const cache = new ShardCache(path.join(root, '.ticketlab-cache', 'decoded'), { size: S, pipeline: `test;${RESIZE_METHOD}` }, warn, { write });
  opened.add(cache);
  return new CachedDecoder(cache, root, S, warn);
}

/** Ends a case: closes the caches it opened, then removes its folder. */
function removeRoot(root: string): void {
  for (const c of opened) c.close();
  opened.clear();
  fs.rmSync(root, { recursive: true, force: true });
}

async function fresh(file: string): Promise<Buffer> {
  return Buffer.from(toCHWBytes(await decodeImage(file), S));
}

/** Reads every file through `dec` and checks each against a fresh decode; returns the cache's hits. */
async function readAll(dec: CachedDecoder, files: string[]): Promise<number> {
  const out = new Uint8Array(PER);
  const before = dec.cache!.hits;
  for (const f of files) {
    await dec.read(f, out, 0);
    expect(Buffer.from(out).equals(await fresh(f)), f).toBe(true);
  }
  await dec.flush();
  return dec.cache!.hits - before;
}

function shards(root: string): string[] {
  const dir = path.join(root, '.ticketlab-cache', 'decoded');
  const out: string[] = [];
  for (const cfg of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    for (const n of fs.readdirSync(path.join(dir, cfg))) out.push(path.join(dir, cfg, n));
  }
  return out;
}

function oneLineWarnings(ws: string[]): void {
  for (const w of ws) expectOneLineError(new Error(w), 'warning');
}

const errno = (code: string): Error => Object.assign(new Error(`${code}: simulated, write`), { code });

describe('decoded cache faults', () => {
  it('a truncated shard, or one of another format version, is named, dropped and rebuilt', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 6 }), fc.oneof(
        fc.record({ kind: fc.constant('truncate' as const), frac: fc.double({ min: 0, max: 0.999, noNaN: true }) }),
        fc.record({ kind: fc.constant('version' as const), version: fc.integer({ min: 0, max: 2 ** 32 - 1 }).filter((v) => v !== SHARD_FORMAT_VERSION) }),
      ), async (n, damage) => {
        const { root, files } = await folder(n);
        try {
          const w0: string[] = [];
          await readAll(decoder(root, w0), files);
          expect(w0).toEqual([]);
          const [shard] = shards(root).filter((f) => f.endsWith(SHARD_EXT));
          if (damage.kind === 'truncate') fs.truncateSync(shard, Math.floor(fs.statSync(shard).size * damage.frac));
          else {
            const fd = fs.openSync(shard, 'r+');
            const b = Buffer.alloc(4);
            b.writeUInt32LE(damage.version);
            fs.writeSync(fd, b, 0, 4, 8);
            fs.closeSync(fd);
          }
          const w1: string[] = [];
          const hits = await withinMs(20_000, 'reading a damaged cache', readAll(decoder(root, w1), files));
          expect(hits).toBe(0);
          expect(w1.length).toBe(1);
          expect(w1[0]).toContain(shard);
          expect(w1[0]).toMatch(damage.kind === 'truncate' ? /truncated|not a ticketlab shard/ : new RegExp(`format version ${damage.version}`));
          oneLineWarnings(w1);
          // Rebuilt: the next reader finds every image in the cache and warns about nothing.
          const w2: string[] = [];
          expect(await readAll(decoder(root, w2), files)).toBe(n);
          expect(w2).toEqual([]);
        } finally {
          removeRoot(root);
        }
      }),
      { numRuns: fuzzRuns(6, 40), seed: fuzzSeed },
    );
  }, fuzzTimeout ?? 60_000);

  it("a bit flipped in a shard's pixels or index is named (shard and image), never served, and decoded afresh", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 6 }), fc.nat(), fc.nat(), fc.constantFrom('pixels' as const, 'index' as const), async (n, pick, bit, where) => {
        const { root, files } = await folder(n);
        try {
          await readAll(decoder(root, []), files);
          const [shard] = shards(root).filter((f) => f.endsWith(SHARD_EXT));
          // Entries are in the order the first pass read them: entry v is files[v].
          const v = pick % n;
          const recordBytes = (fs.statSync(shard).size - 48 - n * PER) / n;
          const at = where === 'pixels' ? 40 + n * recordBytes + v * PER + (bit % PER) : 40 + (bit % (n * recordBytes));
          const b = fs.readFileSync(shard);
          b[at] ^= 1 << (bit % 8);
          fs.writeFileSync(shard, b);
          const ws: string[] = [];
          // readAll checks every byte served against a fresh decode: the damaged image is never served.
          const hits = await withinMs(20_000, 'reading a damaged shard', readAll(decoder(root, ws), files));
          expect(ws.length).toBe(1);
          oneLineWarnings(ws);
          expect(ws[0]).toContain(shard);
          if (where === 'pixels') {
            // The images before it were read (and checked) from the shard; the damaged one drops the shard.
            expect(hits).toBe(v);
            expect(ws[0]).toContain(`image ${v + 1} of ${n} (${files[v]}) fails its checksum`);
          } else {
            expect(hits).toBe(0);
            expect(ws[0]).toMatch(/damaged index/);
          }
          // Rebuilt (a new shard of the same images takes the same name): two more passes (the first re-caches what the dropped shard held) and no warnings.
          const w2: string[] = [];
          await readAll(decoder(root, w2), files);
          expect(await readAll(decoder(root, w2), files)).toBe(n);
          expect(w2).toEqual([]);
        } finally {
          removeRoot(root);
        }
      }),
      { numRuns: fuzzRuns(8, 40), seed: fuzzSeed },
    );
  }, fuzzTimeout ?? 60_000);

  it('a cache of an older shard format is noted in one line, removed and rebuilt', async () => {
    const { root, files } = await folder(3);
    try {
      const cfg = { size: S, pipeline: `test;${RESIZE_METHOD}` };
      const old = path.join(root, '.ticketlab-cache', 'decoded', configKey(cfg, SHARD_FORMAT_VERSION - 1));
      fs.mkdirSync(old, { recursive: true });
      fs.writeFileSync(path.join(old, `s-0123${SHARD_EXT}`), 'an older format');
      const ws: string[] = [];
      expect(await readAll(decoder(root, ws), files)).toBe(0);
      expect(ws.length).toBe(1);
      oneLineWarnings(ws);
      expect(ws[0]).toContain(old);
      expect(ws[0]).toMatch(new RegExp(`format version ${SHARD_FORMAT_VERSION - 1}, this build writes ${SHARD_FORMAT_VERSION}; removed`));
      expect(fs.existsSync(old)).toBe(false);
      const w2: string[] = [];
      expect(await readAll(decoder(root, w2), files)).toBe(3);
      expect(w2).toEqual([]);
    } finally {
      removeRoot(root);
    }
  });

  it('a source changed after caching is named and decoded afresh (only its entry); a deleted one is a one-line skip', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 6 }), fc.nat(), fc.boolean(), async (n, pick, remove) => {
        const { root, files } = await folder(n);
        try {
          await readAll(decoder(root, []), files);
          const victim = files[pick % n];
          const ws: string[] = [];
          const dec = decoder(root, ws);
          if (remove) {
            fs.rmSync(victim);
            const err = await dec.read(victim, new Uint8Array(PER), 0).then(() => null, (e: unknown) => e);
            expect(err).toBeInstanceOf(UnreadableImageError);
            expectOneLineError(err, 'deleted source');
            expect((err as Error).message).toMatch(/deleted after it was cached/);
            expect((err as Error).message).toContain(victim);
            expect(await readAll(dec, files.filter((f) => f !== victim))).toBe(n - 1);
          } else {
            await imageFile(victim, 1000 + pick);
            fs.utimesSync(victim, new Date(), new Date(Date.now() + 5000));
            expect(await readAll(dec, files)).toBe(n - 1);
            expect(ws.length).toBe(1);
            expect(ws[0]).toMatch(/changed since it was cached/);
            expect(ws[0]).toContain(victim);
            oneLineWarnings(ws);
            expect(await readAll(decoder(root, []), files)).toBe(n);
          }
        } finally {
          removeRoot(root);
        }
      }),
      { numRuns: fuzzRuns(6, 40), seed: fuzzSeed },
    );
  }, fuzzTimeout ?? 60_000);

  it('a cache folder that cannot be written falls back to decoding with one warning, and still serves what it holds', async () => {
    const { root, files } = await folder(4);
    try {
      await readAll(decoder(root, []), files.slice(0, 2));
      const ws: string[] = [];
      const hits = await readAll(decoder(root, ws, () => Promise.reject(errno('EROFS'))), files);
      expect(hits).toBe(2);
      expect(ws.length).toBe(1);
      expect(ws[0]).toMatch(/is not writable \(EROFS\); images are decoded without caching them/);
      oneLineWarnings(ws);
      expect(shards(root).length).toBe(1);
      // A real read-only folder where the permission bits bind (not as root).
      if (process.getuid?.() !== 0) {
        const dir = path.dirname(shards(root)[0]);
        fs.chmodSync(dir, 0o555);
        try {
          const w2: string[] = [];
          expect(await readAll(decoder(root, w2), files)).toBe(2);
          expect(w2.join('\n')).toMatch(/not writable \(EACCES\)/);
        } finally {
          fs.chmodSync(dir, 0o755);
        }
      }
    } finally {
      removeRoot(root);
    }
  });

  it('a full disk while writing keeps the shards written before it, and a later run completes the cache', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 3, max: 8 }), fc.integer({ min: 1, max: 7 }), fc.constantFrom('ENOSPC', 'EDQUOT'), async (n, cut, code) => {
        const { root, files } = await folder(n);
        const k = Math.min(cut, n - 1);
        try {
          // The first k images make a shard; the disk fills while the rest are written.
          await readAll(decoder(root, []), files.slice(0, k));
          const ws: string[] = [];
          const full: Writer = async (file, data) => {
            // What a failed atomic write leaves: nothing under the shard's name (io/atomic.ts removes its temp).
            expect(data.length).toBeGreaterThan(0);
            throw Object.assign(new Error(`${code}: no space left on device, write`), { code, path: file });
          };
          expect(await readAll(decoder(root, ws, full), files)).toBe(k);
          expect(ws.length).toBe(1);
          expect(ws[0]).toMatch(new RegExp(`disk full while writing .*\\(${code}\\)`));
          oneLineWarnings(ws);
          const w2: string[] = [];
          expect(await readAll(decoder(root, w2), files)).toBe(k);
          expect(w2).toEqual([]);
          expect(await readAll(decoder(root, []), files)).toBe(n);
        } finally {
          removeRoot(root);
        }
      }),
      { numRuns: fuzzRuns(5, 40), seed: fuzzSeed },
    );
  }, fuzzTimeout ?? 60_000);

  it("a killed writer's half-written temp file is never read and is removed by the next writer", async () => {
    const { root, files } = await folder(3);
    try {
      await readAll(decoder(root, []), files);
      const [shard] = shards(root);
      // A pid that is gone: a process that has exited.
      const dead = spawnSync(process.execPath, ['-e', '0']).pid as number;
      const tmp = `${shard.replace(/s-[0-9a-f]+\.tls$/, 's-abc.tls')}.tmp-${dead}-0123456789ab`;
      fs.writeFileSync(tmp, fs.readFileSync(shard).subarray(0, 100));
      // A fresh one may belong to a live writer on another host sharing the folder: left alone.
      const fresh = `${tmp.replace(/0123456789ab$/, 'ba9876543210')}`;
      fs.writeFileSync(fresh, 'x');
      const old = new Date(Date.now() - 3_600_000);
      fs.utimesSync(tmp, old, old);
      // Named with this host (as tempPathFor names them now) and a dead pid: removed however young.
      const ours = `${tmp.replace(/0123456789ab$/, '00112233aabb')}@${TEMP_HOST}`;
      fs.writeFileSync(ours, 'x');
      // Another host's, young: left alone, its pid means nothing here.
      const theirs = `${tmp.replace(/0123456789ab$/, '44556677ccdd')}@another-host`;
      fs.writeFileSync(theirs, 'x');
      fs.rmSync(shard);
      const ws: string[] = [];
      expect(await readAll(decoder(root, ws), files)).toBe(0);
      expect(ws).toEqual([]);
      expect(fs.existsSync(tmp)).toBe(false);
      expect(fs.existsSync(ours)).toBe(false);
      expect(fs.existsSync(fresh)).toBe(true);
      expect(fs.existsSync(theirs)).toBe(true);
      expect(await readAll(decoder(root, []), files)).toBe(3);
    } finally {
      removeRoot(root);
    }
  });

  it('ticketlab prepare killed with SIGKILL at a random moment: the rerun completes the cache', async () => {
    const { root, files } = await folder(24);
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 2500 }), async (delay) => {
          fs.rmSync(path.join(root, '.ticketlab-cache'), { recursive: true, force: true });
          closeShardCaches();
          const child = spawn(process.execPath, [BIN, 'prepare', '--data', root, '--size', String(S), '--quiet'], { stdio: 'ignore' });
          // Listen for the exit from the start: a prepare that finishes before the kill has already
          // emitted it, and a listener added after the kill would wait forever.
          const exited = new Promise((r) => child.once('exit', r));
          await new Promise((r) => setTimeout(r, delay));
          child.kill('SIGKILL');
          await exited;
          const again = spawnSync(process.execPath, [BIN, 'prepare', '--data', root, '--size', String(S), '--quiet'], { encoding: 'utf8' });
          expect(again.status, again.stderr).toBe(0);
          expect(again.stdout).toMatch(/24 images, \d+ decoded now, \d+ already cached, 0 unreadable/);
          // Every image is now in the cache, and equals a fresh decode.
          const d = await openDataset(root, { size: S, warn: () => undefined });
          const out = new Uint8Array(PER);
          const cache = (d.train as unknown as { cache: ShardCache }).cache;
          for (const f of files) {
            const st = fs.statSync(f);
            const key = cache.keyOf({ rel: path.relative(root, f), bytes: st.size, mtimeMs: st.mtimeMs });
            expect(cache.readInto(key, out, 0), f).toBe(true);
            expect(Buffer.from(out).equals(await fresh(f))).toBe(true);
          }
          expect(fs.readdirSync(path.dirname(cache.dir)).length).toBe(1);
          // Nothing else: a kill inside a shard's write leaves the child's temp file, named with this
          // host and its (now dead) pid, and the rerun's scan removed it.
          expect(fs.readdirSync(cache.dir).filter((n) => !n.endsWith(SHARD_EXT))).toEqual([]);
        }),
        { numRuns: fuzzRuns(3, 1000), seed: fuzzSeed },
      );
    } finally {
      removeRoot(root);
    }
  }, fuzzTimeout ?? 180_000);
});

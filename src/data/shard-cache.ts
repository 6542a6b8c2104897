// The decoded cache: images as they enter the model (CHW uint8 at the training size, after crop and
// resize, before augmentation) in immutable shard files, so every later epoch, level, seed, control,
// transfer and sweep unit reads bytes instead of decoding and resizing JPEGs again.
//
// One folder per pixel-changing configuration (`<cache>/decoded/<config key>/`); in it, shards written
// once each by whichever process decoded their images (temp file, fsync, rename: a reader sees a whole
// shard or none), named by the hash of their contents so two writers that decode the same images write
// the same name. Nothing is ever rewritten in place: a process that misses an image decodes it and puts
// it in a new shard, so concurrent sweep workers never corrupt the cache, at worst duplicate an entry.
// Format (all integers little-endian u32):
//   0  "TLSHARD\n"    8  version   12 side   16 count   20 CRC-32 of the index   24 config key (16 bytes)
//   40 count x [entry key (16 bytes), path key (8 bytes), CRC-32 of the entry's pixels, 0]
//   then count x 3*side*side pixel bytes (CHW), then "TLSHEND\n".
// Checksums: the index's is checked whenever a shard's header is read; an entry's the first time this
// process reads that entry (a damaged image is then named and its shard dropped). Later reads of an
// entry are not checked again: a warm epoch at 4,000 images/s would spend a core on it, and the bytes
// are those that passed, read again from the page cache.
// Memory: a shard's whole file is kept in this process once one of its entries is read, while the
// process's budget allows (shard-memory.ts: TICKETLAB_CACHE_MEM, default a quarter of RAM or half
// of what is free, whichever is less, leaving a fifth of RAM available), so a warm image costs a memcpy instead of a pread syscall
// (FFCV's "os_cache" idea, but bounded and per process). Shards are never rewritten in place, so the
// copy stays right while the file on disk is the one read: each shard's identity (device, inode,
// size, mtime) is recorded when it is indexed, checked when it is opened, and checked again on every
// rescan (each epoch's end); a shard replaced, rebuilt, touched or removed on disk is forgotten,
// copy and index, and read afresh (its entries' checksums checked again on their first read). Over
// budget, shards are read per entry from disk as before; nothing is evicted (a shuffled epoch would
// thrash an LRU).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { TEMP_HOST, tempWriter, writeFileAtomic } from '../io/atomic.js';
import { crc32 } from './crc32.js';
import { holdShardMemory, shardMemoryBudget, shardMemoryRoom } from './shard-memory.js';

/**
 * Bumped whenever the bytes of an entry or the file layout change; part of every key. Version 2 added
 * the checksums (version 1 shards are removed with a note and rebuilt: see ShardCache's constructor).
 */
export const SHARD_FORMAT_VERSION = 2;
export const SHARD_EXT = '.tls';
const MAGIC = Buffer.from('TLSHARD\n', 'latin1');
const TRAILER = Buffer.from('TLSHEND\n', 'latin1');
const HEADER_BYTES = 40;
/** Bytes of one index record (exported for the size per image that `prepare` reports). */
export const RECORD_BYTES = 32;
/** A process's pending images go to disk once they reach this many bytes or MAX_PENDING images. */
const FLUSH_BYTES = 64 << 20;
const MAX_PENDING = 1024;

/** Everything besides the source file that changes an entry's pixels. */
export interface CacheConfig {
  /** training side in pixels */
  size: number;
  /** how a source becomes a size x size image: the resize method and the crop (mode + settings) */
  pipeline: string;
}

export interface CacheLocation {
  shard: string;
  offset: number;
  /** the entry's path key (which file, without size and mtime) */
  path: string;
  /** which entry of how many in its shard (for messages) */
  entry: number;
  count: number;
  crc: number;
  /** whether this process has checked the entry's checksum already */
  checked: boolean;
}

function sha(parts: readonly string[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest();
}

/** The folder name of a configuration: its hash with the format version (`version`: an older one's). */
export function configKey(cfg: CacheConfig, version = SHARD_FORMAT_VERSION): string {
  return sha([`v${version}`, String(cfg.size), cfg.pipeline]).subarray(0, 16).toString('hex');
}

/**
 * Source identity of one image: where it is (relative to the dataset root), its size and modification
 * time. The time is node's plain `mtimeMs` (a double, about a quarter-microsecond resolution), not the
 * bigint nanoseconds: the bigint stat cost three times as much, once per image per epoch.
 */
export interface SourceId {
  rel: string;
  bytes: number;
  mtimeMs: number;
}

/** A source file's identity in the cache: its path under `root`, size and mtime (from `st` when the caller has stat'ed it already). */
export function statSource(file: string, root: string, st: { size: number; mtimeMs: number } = fs.statSync(file)): SourceId {
  return { rel: path.relative(root, file), bytes: st.size, mtimeMs: st.mtimeMs };
}

function entryKey(cfgKey: string, src: SourceId): string {
  return sha([cfgKey, src.rel, String(src.bytes), String(src.mtimeMs)]).subarray(0, 16).toString('hex');
}

function pathKey(cfgKey: string, rel: string): string {
  return sha([cfgKey, rel]).subarray(0, 8).toString('hex');
}

/** A shard that cannot be used, with the one line that names why. */
export class ShardError extends Error {}

/** A file's identity: a shard rebuilt, replaced or written to since differs in one of these. */
export interface FileId {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

function fileId(st: fs.Stats): FileId {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
}

function sameFile(a: FileId, b: FileId): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

interface ShardIndex {
  side: number;
  entries: Array<{ key: string; path: string; offset: number; crc: number }>;
  /** the identity of the file the index was read from */
  id: FileId;
}

/** Reads and checks a shard's header and index (not its pixels); a ShardError names what is wrong. */
export function readShardIndex(file: string, expectSide: number, expectConfig: string): ShardIndex {
  const fd = fs.openSync(file, 'r');
  try {
    const st = fs.fstatSync(fd);
    const size = st.size;
    const head = Buffer.alloc(HEADER_BYTES);
    if (fs.readSync(fd, head, 0, HEADER_BYTES, 0) < HEADER_BYTES || !head.subarray(0, 8).equals(MAGIC)) {
      throw new ShardError(`cache shard ${file} is not a ticketlab shard or is truncated (${size} bytes)`);
    }
    const version = head.readUInt32LE(8);
    if (version !== SHARD_FORMAT_VERSION) throw new ShardError(`cache shard ${file} has format version ${version}, this build reads ${SHARD_FORMAT_VERSION}`);
    const side = head.readUInt32LE(12);
    const count = head.readUInt32LE(16);
    const cfg = head.subarray(24, 40).toString('hex');
    if (side !== expectSide || cfg !== expectConfig) throw new ShardError(`cache shard ${file} belongs to another configuration (side ${side})`);
    const per = 3 * side * side;
    const want = HEADER_BYTES + count * RECORD_BYTES + count * per + TRAILER.length;
    if (size !== want) throw new ShardError(`cache shard ${file} is truncated or padded: ${size} bytes where its header says ${want}`);
    const table = Buffer.alloc(count * RECORD_BYTES);
    fs.readSync(fd, table, 0, table.length, HEADER_BYTES);
    if (crc32(table) !== head.readUInt32LE(20)) throw new ShardError(`cache shard ${file} has a damaged index (checksum mismatch)`);
    const tail = Buffer.alloc(TRAILER.length);
    fs.readSync(fd, tail, 0, tail.length, want - TRAILER.length);
    if (!tail.equals(TRAILER)) throw new ShardError(`cache shard ${file} lacks its end marker (a damaged write)`);
    const base = HEADER_BYTES + count * RECORD_BYTES;
    const entries = [];
    for (let i = 0; i < count; i++) {
      const r = table.subarray(i * RECORD_BYTES, (i + 1) * RECORD_BYTES);
      entries.push({ key: r.subarray(0, 16).toString('hex'), path: r.subarray(16, 24).toString('hex'), offset: base + i * per, crc: r.readUInt32LE(24) });
    }
    return { side, entries, id: fileId(st) };
  } finally {
    fs.closeSync(fd);
  }
}

/** An image on its way into a shard: its entry key, path key, pixels and (when known) their CRC-32. */
export interface ShardItem {
  key: string;
  path: string;
  pixels: Uint8Array;
  /** the pixels' checksum when it was computed already (the decode worker does: it has the bytes) */
  crc?: number;
}

/**
 * A shard holding `items` as the pieces of its file, in order: header and index, each item's pixels
 * (the arrays themselves, not copies), the end marker. The writer hands them to one vectored write:
 * copying them into one 64 MB buffer first cost the first pass's main thread about 0.2 ms per 256 px
 * image, and the garbage collector its share.
 */
export function shardParts(side: number, cfgKey: string, items: ReadonlyArray<ShardItem>): Uint8Array[] {
  const per = 3 * side * side;
  const head = Buffer.alloc(HEADER_BYTES + items.length * RECORD_BYTES);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(SHARD_FORMAT_VERSION, 8);
  head.writeUInt32LE(side, 12);
  head.writeUInt32LE(items.length, 16);
  head.write(cfgKey, 24, 16, 'hex');
  items.forEach((it, i) => {
    if (it.pixels.length !== per) throw new Error(`cache entry has ${it.pixels.length} bytes, expected ${per}`);
    const rec = HEADER_BYTES + i * RECORD_BYTES;
    head.write(it.key, rec, 16, 'hex');
    head.write(it.path, rec + 16, 8, 'hex');
    head.writeUInt32LE(it.crc ?? crc32(it.pixels), rec + 24);
  });
  head.writeUInt32LE(crc32(head.subarray(HEADER_BYTES)), 20);
  return [head, ...items.map((it) => it.pixels), TRAILER];
}

/** The bytes of a shard holding `items`, in one buffer (the fault tests build and damage shards with it). */
export function encodeShard(side: number, cfgKey: string, items: ReadonlyArray<ShardItem>): Buffer {
  return Buffer.concat(shardParts(side, cfgKey, items));
}

const READ_ONLY = new Set(['EROFS', 'EACCES', 'EPERM']);
const FULL = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** Age after which a temp file whose pid is gone here counts as abandoned (a writer needs seconds). */
const ORPHAN_AGE_MS = 10 * 60_000;

/**
 * A temp file left by a writer that was killed (`<name>.tmp-<pid>-<hex>@<host>`, io/atomic.ts). Written
 * on this host: its pid is gone. From another host, or named without one by an earlier version: it is
 * also older than ORPHAN_AGE_MS, since on a folder shared by hosts a pid dead here may be a live writer
 * elsewhere.
 */
function orphanedTemp(file: string, name: string, now: number): boolean {
  const w = tempWriter(name);
  if (!w) return false;
  try {
    if (w.host !== TEMP_HOST && now - fs.statSync(file).mtimeMs < ORPHAN_AGE_MS) return false;
    process.kill(w.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * One configuration's folder of shards, seen from one process: an index of every entry on disk (key ->
 * shard, offset), the images this process decoded and has not written yet, and the writer. Failures to
 * write (read-only folder, full disk) are warned about once and end writing; reading goes on.
 */
export class ShardCache {
  readonly dir: string;
  readonly cfgKey: string;
  readonly side: number;
  private readonly index = new Map<string, CacheLocation>();
  private readonly paths = new Set<string>();
  private readonly known = new Set<string>();
  private readonly fds = new Map<string, number>();
  /** the identity of each indexed shard file, as indexed */
  private readonly ids = new Map<string, FileId>();
  /** whole shard files held in memory (see the header) */
  private readonly copies = new Map<string, Buffer>();
  private pending: ShardItem[] = [];
  /** images decoded here and not yet indexed from a written shard (queued or being written) */
  private pendingKeys = new Map<string, ShardItem>();
  private writing: Promise<void> = Promise.resolve();
  private writable = true;
  /** entries read from shards and written to them by this process (bench, prepare, tests) */
  hits = 0;
  /** of the hits, those copied from a shard held in memory */
  memoryHits = 0;
  written = 0;

  private readonly write: (file: string, parts: readonly Uint8Array[]) => Promise<void>;

  /** `write` replaces the atomic writer (tests inject ENOSPC / EROFS failures through it). */
  constructor(root: string, readonly cfg: CacheConfig, private readonly warn: (m: string) => void, o: { write?: (file: string, data: Uint8Array) => Promise<void> } = {}) {
    const w = o.write;
    this.write = w ? (file, parts) => w(file, Buffer.concat(parts)) : writeFileAtomic;
    this.cfgKey = configKey(cfg);
    this.side = cfg.size;
    // Created by the first write, not here: opening a dataset leaves its folder as it was.
    this.dir = path.join(root, this.cfgKey);
    // A bad TICKETLAB_CACHE_MEM fails here, in one line, not later inside a read (which drops shards).
    shardMemoryBudget();
    this.dropOlderVersions(root);
    this.rescan();
  }

  /**
   * The same configuration cached by an older format (its folder name hashes the older version): one
   * note, then the folder is removed (when it can be) and its images are decoded afresh into this one.
   */
  private dropOlderVersions(root: string): void {
    for (let v = 1; v < SHARD_FORMAT_VERSION; v++) {
      const old = path.join(root, configKey(this.cfg, v));
      if (!fs.existsSync(old)) continue;
      let removed = true;
      try {
        fs.rmSync(old, { recursive: true, force: true });
      } catch {
        removed = false;
      }
      this.warn(`the decoded cache ${old} has shard format version ${v}, this build writes ${SHARD_FORMAT_VERSION}; ${removed ? 'removed' : 'left in place (it cannot be removed)'}, its images are decoded afresh into ${this.dir}`);
    }
  }

  get bytesPerImage(): number {
    return 3 * this.side * this.side;
  }

  /**
   * Reads the headers of shards not seen yet (other processes add shards while we run), after
   * forgetting those whose file changed or went since they were indexed (re-indexed below if present).
   */
  rescan(): void {
    for (const [file, id] of [...this.ids]) {
      const st = fs.statSync(file, { throwIfNoEntry: false });
      if (!st || !sameFile(fileId(st), id)) this.forget(file);
    }
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      const file = path.join(this.dir, name);
      if (!name.endsWith(SHARD_EXT)) {
        if (this.writable && orphanedTemp(file, name, Date.now())) {
          try {
            fs.rmSync(file, { force: true });
          } catch {
            // a read-only folder: the temp is ignored like any other non-shard name
          }
        }
        continue;
      }
      if (this.known.has(name)) continue;
      this.indexShard(file);
    }
  }

  /** Reads shard `file`'s index into this process's (a damaged shard is dropped, with its warning). */
  private indexShard(file: string): void {
    this.known.add(path.basename(file));
    try {
      const ix = readShardIndex(file, this.side, this.cfgKey);
      this.ids.set(file, ix.id);
      ix.entries.forEach((e, i) => {
        if (!this.index.has(e.key)) this.index.set(e.key, { shard: file, offset: e.offset, path: e.path, entry: i, count: ix.entries.length, crc: e.crc, checked: false });
        this.paths.add(e.path);
      });
    } catch (e) {
      this.dropShard(file, e);
    }
  }

  /**
   * Forgets everything this process holds of shard `file` (index entries, open file, memory copy)
   * without a warning and without touching the file: it changed or went on disk, which is no damage.
   * Its entries' paths are kept (a re-indexed shard has them again; a vanished one's images are
   * "changed since cached" only if their sources changed, which the entry keys decide).
   */
  private forget(file: string): void {
    this.unindex(file, false);
    this.known.delete(path.basename(file));
  }

  /**
   * Drops what this process holds of shard `file`: its index entries (and, with `paths`, their path
   * keys), its open file and its memory copy.
   */
  private unindex(file: string, paths: boolean): void {
    for (const [k, loc] of this.index) {
      if (loc.shard !== file) continue;
      this.index.delete(k);
      if (paths) this.paths.delete(loc.path);
    }
    const fd = this.fds.get(file);
    if (fd !== undefined) fs.closeSync(fd);
    this.fds.delete(file);
    this.release(file);
    this.ids.delete(file);
  }

  private release(file: string): void {
    const c = this.copies.get(file);
    if (c) holdShardMemory(-c.length);
    this.copies.delete(file);
  }

  /**
   * A damaged shard: warned about, forgotten with its paths (their fresh decodes are not "changed since
   * cached"; the one warning says why they are decoded), and removed. It stays `known`, so a shard that
   * cannot be removed is not indexed again.
   */
  private dropShard(file: string, e: unknown): void {
    const why = e instanceof ShardError ? e.message : `cache shard ${file} cannot be read: ${(e as Error).message.split('\n')[0]}`;
    this.warn(`${why}; its images are decoded afresh`);
    this.unindex(file, true);
    if (this.writable) {
      try {
        fs.rmSync(file, { force: true });
      } catch {
        // another process may hold the folder read-only; the bad shard is ignored either way
      }
    }
  }

  keyOf(src: SourceId): string {
    return entryKey(this.cfgKey, src);
  }

  /** Whether some version of `rel` was ever cached here (so a miss means it changed since). */
  hadPath(rel: string): boolean {
    return this.paths.has(pathKey(this.cfgKey, rel));
  }

  has(key: string): boolean {
    return this.index.has(key) || this.pendingKeys.has(key);
  }

  /**
   * Copies entry `key` into `out` at `at`; false when it is not cached, or when its shard turned out to
   * be damaged since it was indexed (truncated, or this entry fails its checksum on its first read
   * here): that is warned about in one line naming the shard and the image (`source`, if given), and
   * the shard is dropped, so its images are decoded afresh.
   */
  readInto(key: string, out: Uint8Array, at = 0, source?: string): boolean {
    const per = this.bytesPerImage;
    const loc = this.index.get(key);
    if (!loc) {
      const p = this.pendingKeys.get(key);
      if (!p) return false;
      out.set(p.pixels, at);
      return true;
    }
    try {
      const copy = this.copies.get(loc.shard) ?? this.open(loc.shard);
      if (copy === 'changed') return this.readAfresh(key, out, at, source);
      if (copy) {
        if (loc.offset + per > copy.length) throw new ShardError(`cache shard ${loc.shard} is truncated: an entry at byte ${loc.offset} lies past its ${copy.length} bytes`);
        out.set(copy.subarray(loc.offset, loc.offset + per), at);
        this.memoryHits++;
      } else {
        const got = fs.readSync(this.fds.get(loc.shard) as number, out, at, per, loc.offset);
        if (got !== per) throw new ShardError(`cache shard ${loc.shard} is truncated: an entry at byte ${loc.offset} ended after ${got} of ${per} bytes`);
      }
      if (!loc.checked) {
        const sum = crc32(out.subarray(at, at + per));
        if (sum !== loc.crc) {
          const hex = (v: number): string => v.toString(16).padStart(8, '0');
          throw new ShardError(`cache shard ${loc.shard}: image ${loc.entry + 1} of ${loc.count}${source === undefined ? '' : ` (${source})`} fails its checksum (stored ${hex(loc.crc)}, read ${hex(sum)})`);
        }
        loc.checked = true;
      }
    } catch (e) {
      this.dropShard(loc.shard, e);
      return false;
    }
    this.hits++;
    return true;
  }

  /**
   * Opens shard `file` on its first read here: its whole file in memory when the budget has room, else
   * an open descriptor (null). 'changed': the file is not the one indexed (replaced or rewritten in
   * between), so it is forgotten and re-indexed.
   */
  private open(file: string): Buffer | null | 'changed' {
    let fd = this.fds.get(file);
    if (fd !== undefined) return null;
    fd = fs.openSync(file, 'r');
    const id = this.ids.get(file);
    const now = fileId(fs.fstatSync(fd));
    if (!id || !sameFile(now, id)) {
      fs.closeSync(fd);
      this.forget(file);
      this.indexShard(file);
      return 'changed';
    }
    if (!shardMemoryRoom(now.size)) {
      this.fds.set(file, fd);
      return null;
    }
    try {
      const copy = Buffer.allocUnsafeSlow(now.size);
      let got = 0;
      while (got < now.size) {
        const r = fs.readSync(fd, copy, got, now.size - got, got);
        if (r === 0) throw new ShardError(`cache shard ${file} is truncated: it ended after ${got} of ${now.size} bytes`);
        got += r;
      }
      this.copies.set(file, copy);
      holdShardMemory(copy.length);
      return copy;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** readInto once more after the entry's shard was re-indexed: a miss if the key is gone or the file changed again. */
  private readAfresh(key: string, out: Uint8Array, at: number, source?: string): boolean {
    const loc = this.index.get(key);
    if (!loc) return false;
    if (!this.copies.has(loc.shard) && !this.fds.has(loc.shard) && this.open(loc.shard) === 'changed') return false;
    return this.readInto(key, out, at, source);
  }

  /**
   * Queues a decoded image for the next shard; writes one when enough are pending. `o.key` is
   * `keyOf(src)` when the caller has it already (a hash less per image), `o.crc` the pixels' CRC-32
   * when it was computed where they were made; the pixels must not change once added.
   */
  add(src: SourceId, pixels: Uint8Array, o: { key?: string; crc?: number } = {}): void {
    if (!this.writable) return;
    const key = o.key ?? this.keyOf(src);
    if (this.has(key)) return;
    if (pixels.length !== this.bytesPerImage) throw new Error(`cache entry for ${src.rel} has ${pixels.length} bytes, expected ${this.bytesPerImage}`);
    const item: ShardItem = { key, path: pathKey(this.cfgKey, src.rel), pixels, ...(o.crc === undefined ? {} : { crc: o.crc }) };
    this.pending.push(item);
    this.pendingKeys.set(key, item);
    if (this.pending.length >= MAX_PENDING || this.pending.length * this.bytesPerImage >= FLUSH_BYTES) void this.flush();
  }

  /** Writes what is pending as one shard (atomically); resolves once every write so far is done. */
  flush(): Promise<void> {
    const items = this.pending;
    this.pending = [];
    if (items.length > 0 && this.writable) {
      this.writing = this.writing.then(() => this.writeShard(items)).finally(() => {
        for (const it of items) this.pendingKeys.delete(it.key);
      });
    } else {
      for (const it of items) this.pendingKeys.delete(it.key);
    }
    return this.writing;
  }

  private async writeShard(items: ShardItem[]): Promise<void> {
    if (!this.writable) return;
    const name = `s-${sha(items.map((i) => i.key)).subarray(0, 12).toString('hex')}${SHARD_EXT}`;
    const file = path.join(this.dir, name);
    const parts = shardParts(this.side, this.cfgKey, items);
    const head = parts[0] as Buffer;
    try {
      await this.write(file, parts);
    } catch (e) {
      this.stopWriting(e, file);
      return;
    }
    this.written += items.length;
    this.known.add(name);
    // Its identity as written; a shard this process cannot stat now is re-indexed on its first read.
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (st) this.ids.set(file, fileId(st));
    // Read back later like any other shard's entries: checked on their first read from the file.
    items.forEach((it, i) => {
      if (!this.index.has(it.key)) {
        // The checksum shardParts put in the entry's record (computing it again cost the first pass's main thread 0.08 ms per 256 px image).
        const crc = head.readUInt32LE(HEADER_BYTES + i * RECORD_BYTES + 24);
        this.index.set(it.key, { shard: file, offset: HEADER_BYTES + items.length * RECORD_BYTES + i * this.bytesPerImage, path: it.path, entry: i, count: items.length, crc, checked: false });
      }
      this.paths.add(it.path);
    });
  }

  private stopWriting(e: unknown, where: string): void {
    if (!this.writable) return;
    this.writable = false;
    const code = (e as NodeJS.ErrnoException).code ?? '';
    const msg = (e as Error).message.split('\n')[0];
    if (READ_ONLY.has(code)) this.warn(`the decoded cache ${this.dir} is not writable (${code}); images are decoded without caching them`);
    else if (FULL.has(code)) this.warn(`disk full while writing ${where} (${code}); that shard was not kept (its images decode afresh next time) and the cache stops growing in this process`);
    else this.warn(`cannot write the decoded cache (${msg}); images are decoded without caching them`);
  }

  get canWrite(): boolean {
    return this.writable;
  }

  /** Entries on disk (as indexed by this process). */
  get entries(): number {
    return this.index.size;
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    for (const file of [...this.copies.keys()]) this.release(file);
  }

  /** Bytes of this cache's shards held in memory. */
  get memoryBytes(): number {
    let n = 0;
    for (const c of this.copies.values()) n += c.length;
    return n;
  }
}

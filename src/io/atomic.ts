// Atomic file writes: a reader (or a resumed run) sees either the old file or the complete new one,
// never a prefix. The temp file lives beside the target because rename(2) is atomic only within one
// file system.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';

/** This host as it appears in temp names (characters a file name may not hold become '_'). */
export const TEMP_HOST = os.hostname().replace(/[^\w.-]/g, '_');

/**
 * `<target>.tmp-<pid>-<random>@<host>`: the pid and host say which process left a stale one behind
 * after a kill, so a sweeper on the same host can tell a dead writer's file from a live one's at once,
 * while on a folder shared by hosts another host's pid means nothing here.
 */
export function tempPathFor(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}@${TEMP_HOST}`;
}

/** The writer of a temp name from tempPathFor (host null: named by an earlier version, without one); null for other names. */
export function tempWriter(name: string): { pid: number; host: string | null } | null {
  const m = /\.tmp-(\d+)-[0-9a-f]+(?:@([\w.-]+))?$/.exec(name);
  return m ? { pid: Number(m[1]), host: m[2] ?? null } : null;
}

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

// Persisting the rename itself needs the directory entry flushed. Not every platform lets a directory
// be opened (Windows), and durability of the rename is a bonus over atomicity, so failures are ignored.
async function fsyncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch {
    // best effort, see above
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // best effort, see fsyncDir
  } finally {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // nothing left to do
      }
    }
  }
}

/**
 * The error of a failed write, naming the file: Node's ENOSPC/EIO/EACCES messages name only the syscall
 * ("ENOSPC: no space left on device, write"), which leaves the user guessing which of a run's files it
 * was. The errno `code` is kept for callers that branch on it.
 */
export function writeError(target: string, err: unknown): Error {
  if (!(err instanceof Error)) return new Error(`cannot write ${target}: ${String(err)}`);
  if (err.message.includes(target)) return err;
  const out = new Error(`cannot write ${target}: ${err.message.split('\n')[0]}`) as NodeJS.ErrnoException;
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined) out.code = code;
  return out;
}

/**
 * Writes `data` to `target` atomically (temp file, fsync, rename), creating parent folders. An array
 * is the file's pieces in order, written without joining them (a vectored write).
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array | readonly Uint8Array[]): Promise<void> {
  try {
    await writeViaTemp(target, data, 'rename');
  } catch (err) {
    throw writeError(target, err);
  }
}

const REWIND_POINT = "move it away only if you mean to discard this run's rewind point";

/**
 * Writes `target` once, atomically, and never replaces it: a file that already exists is left alone
 * when it holds the same bytes (a resumed run capturing the same deterministic snapshot again), and is
 * an error when it differs. For the files a run must never rewrite once made: a level's init/rewind/start
 * weights, the rewind points later levels and controls start from. The final step is link(2), which
 * fails when the name exists, so two writers cannot both win. `why` ends the refusal: what the user may
 * do about it.
 */
export async function writeFileOnce(target: string, data: string | Uint8Array, why = REWIND_POINT): Promise<'written' | 'same'> {
  try {
    if (fs.existsSync(target)) return sameOrRefuse(target, data, why);
    try {
      await writeViaTemp(target, data, 'link');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return sameOrRefuse(target, data, why);
      throw err;
    }
    return 'written';
  } catch (err) {
    throw writeError(target, err);
  }
}

function sameOrRefuse(target: string, data: string | Uint8Array, why: string): 'same' {
  if (Buffer.from(toBytes(data)).equals(fs.readFileSync(target))) return 'same';
  throw new Error(`${target} already exists with other contents; it is written once and never replaced (${why})`);
}

/**
 * Bytes one writev is given at most (whole pieces; a larger piece goes alone), as many as
 * FileHandle.writeFile writes per call. Measured on the 2-core VM writing the decoded cache's 64 MB
 * shards (256 px cold epochs of bench/loader.ts, interleaved): one writev per shard sometimes cost the
 * kernel far more CPU (0.3 ms more per image); 4 MiB calls still did now and then (713 img/s mean of
 * three, main 734); 512 KiB calls 770 and then 820-843 (main 717-754).
 */
const WRITEV_BYTES = 512 << 10;

/** Every byte of `parts` at the start of an empty file, in order (writev may write fewer than asked). */
async function writeAllParts(handle: fsp.FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  let rest = parts.filter((p) => p.length > 0);
  let at = 0;
  while (rest.length > 0) {
    let take = 0;
    for (let sum = 0; take < rest.length && (take === 0 || sum + rest[take].length <= WRITEV_BYTES); take++) sum += rest[take].length;
    let { bytesWritten: n } = await handle.writev(rest.slice(0, take), at);
    if (n === 0) throw new Error('writev wrote nothing');
    at += n;
    // Drop what was written: whole pieces, then the front of a piece written in part.
    let k = 0;
    while (k < rest.length && n >= rest[k].length) n -= rest[k++].length;
    rest = rest.slice(k);
    if (n > 0) rest[0] = rest[0].subarray(n);
  }
}

async function writeViaTemp(target: string, data: string | Uint8Array | readonly Uint8Array[], finish: 'rename' | 'link'): Promise<void> {
  const dir = path.dirname(target);
  await fsp.mkdir(dir, { recursive: true });
  const tmp = tempPathFor(target);
  let handle: fsp.FileHandle | undefined;
  try {
    // 'wx' refuses to reuse a name, so two writers can never share a temp file.
    handle = await fsp.open(tmp, 'wx', 0o644);
    if (Array.isArray(data)) await writeAllParts(handle, data);
    else await handle.writeFile(toBytes(data as string | Uint8Array));
    // Without the fsync a crash after rename can leave a zero-length target on ext4/xfs.
    await handle.sync();
    await handle.close();
    handle = undefined;
    if (finish === 'rename') await fsp.rename(tmp, target);
    else {
      await fsp.link(tmp, target);
      await fsp.rm(tmp, { force: true });
    }
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

/** Synchronous twin of {@link writeFileAtomic}, for exit handlers and other places that cannot await. */
export function writeFileAtomicSync(target: string, data: string | Uint8Array): void {
  try {
    writeViaTempSync(target, data);
  } catch (err) {
    throw writeError(target, err);
  }
}

function writeViaTempSync(target: string, data: string | Uint8Array): void {
  const dir = path.dirname(target);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = tempPathFor(target);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
    fs.writeFileSync(fd, toBytes(data));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, target);
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // the original error matters more
      }
    }
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDirSync(dir);
}

/** Pretty JSON (2-space indent) with a trailing newline, so files diff and `cat` cleanly. */
export function formatJson(value: unknown): string {
  const text = JSON.stringify(value, null, 2);
  // JSON.stringify returns undefined for undefined/functions/symbols; writing "undefined" would be a
  // file nobody can read back.
  if (text === undefined) throw new TypeError(`value of type ${typeof value} is not JSON-serialisable`);
  return text + '\n';
}

export async function writeJsonAtomic(target: string, value: unknown): Promise<void> {
  await writeFileAtomic(target, formatJson(value));
}

export function writeJsonAtomicSync(target: string, value: unknown): void {
  writeFileAtomicSync(target, formatJson(value));
}

function parseJsonFile<T>(file: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`${file}: invalid JSON: ${reason.split('\n')[0]}`);
  }
}

/**
 * Reads and parses a JSON file. The type parameter is trusted, not checked: validate the result when
 * the file may come from elsewhere.
 */
export async function readJson<T = unknown>(file: string): Promise<T> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw readError(file, err);
  }
  return parseJsonFile<T>(file, text);
}

export function readJsonSync<T = unknown>(file: string): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw readError(file, err);
  }
  return parseJsonFile<T>(file, text);
}

/** A failed read naming the file (EISDIR/EACCES messages name only the syscall); keeps the errno code. */
function readError(file: string, err: unknown): Error {
  const e = writeError(file, err);
  e.message = e.message.replace(/^cannot write /, 'cannot read ');
  return e;
}

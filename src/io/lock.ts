// One writer per folder (and one worker per sweep unit): a lock file made with an atomic
// create-exclusive open, holding who holds it and a heartbeat the holder refreshes. A lock whose holder
// is gone is taken over:
//   - on the same host, when the holder's pid no longer exists (kill -9, a scheduler's kill) or was
//     reused by a later process, at once; a live holder is never stale there, however old its heartbeat
//     (a run stopped with Ctrl-Z, or too busy to beat, still owns its folder);
//   - from another host, when the heartbeat is older than `staleMs` (a node that died, a pod evicted).
// Breaking a stale lock is itself serialised by a second create-exclusive file (`<lock>.break`), so two
// processes that both see the same stale lock cannot both delete it and then delete each other's fresh
// one. A lock file is written aside (`<lock>.<host>.<pid>.<hex>.tmp`) and linked into place; one that a
// process killed in between left behind is swept the next time the lock is taken (sweepPrivateFiles).
// Everything is synchronous: locks are taken at start-up and released in exit handlers.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeFileAtomicSync, formatJson, TEMP_HOST } from './atomic.js';

export interface LockHolder {
  host: string;
  pid: number;
  /** ISO time the lock was taken. */
  started: string;
  /** ISO time of the last refresh. */
  heartbeat: string;
  /** What the holder is doing, for messages ("imp", "sweep worker 2 on level_3"). */
  purpose: string;
  /** Random, so a holder can tell its own lock from a successor's. */
  token: string;
}

export interface LockOptions {
  purpose: string;
  /** A heartbeat older than this marks the lock stale. Default 60 s. */
  staleMs?: number;
  /** How often the holder refreshes its heartbeat. Default staleMs / 4; 0 disables the timer. */
  heartbeatMs?: number;
}

export interface HeldLock {
  readonly file: string;
  readonly holder: LockHolder;
  /** True once another process took the lock over (our heartbeat stopped for longer than staleMs). */
  readonly lost: boolean;
  /** Rewrites the heartbeat now (also done by a timer). */
  refresh(): void;
  /** Removes the lock if it is still ours. Safe to call twice. */
  release(): void;
}

export const DEFAULT_STALE_MS = 60_000;
/** A `.break` file older than this belongs to a breaker that died mid-way. */
const BREAK_STALE_MS = 10_000;
/**
 * A private file (createExclusive's) from another host older than this was abandoned: a live writer
 * links it within milliseconds, and ten minutes spare one that was stopped (Ctrl-Z) in between.
 */
const PRIVATE_STALE_MS = 600_000;

export class LockHeldError extends Error {
  constructor(
    readonly file: string,
    readonly holder: LockHolder,
  ) {
    super(`${path.dirname(file)} is in use by ${describeHolder(holder)}; wait for it to finish, or stop it`);
    this.name = 'LockHeldError';
  }
}

export function describeHolder(h: LockHolder): string {
  return `${h.purpose || 'a ticketlab process'} (pid ${h.pid} on ${h.host}, since ${h.started}, last heartbeat ${h.heartbeat})`;
}

function isHolder(v: unknown): v is LockHolder {
  if (v === null || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  return typeof o.host === 'string' && Number.isInteger(o.pid) && typeof o.started === 'string' && typeof o.heartbeat === 'string' &&
    typeof o.purpose === 'string' && typeof o.token === 'string';
}

/**
 * The holder recorded in a lock file, or null when there is none. A lock file that cannot be parsed is
 * reported as a holder with pid 0 and the file's mtime as heartbeat, so it goes stale like any other.
 */
export function readLock(file: string): LockHolder | null {
  let text: string;
  let mtime: Date;
  try {
    text = fs.readFileSync(file, 'utf8');
    mtime = fs.statSync(file).mtime;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    // Node's own message ("EISDIR: illegal operation on a directory, read") names no file.
    if (code === 'EISDIR') throw new Error(`${file} is a folder, not a lock file; remove it if no ticketlab process is using ${path.dirname(file)}`);
    throw new Error(`${file}: cannot read the lock (${code ?? (err as Error).message.split('\n')[0]})`);
  }
  try {
    const v: unknown = JSON.parse(text);
    if (isHolder(v)) return v;
  } catch {
    // fall through: damaged lock
  }
  return { host: '?', pid: 0, started: mtime.toISOString(), heartbeat: mtime.toISOString(), purpose: 'an unreadable lock', token: '' };
}

function pidAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the pid exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When process `pid` started, in ms since the epoch (to about a second), from /proc/<pid>/stat and the
 * boot time in /proc/stat; null where /proc cannot tell (not Linux, or the pid is gone).
 */
function pidStartedMs(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime, in clock ticks since boot); the command name (field 2) may hold spaces, so
    // count from its closing parenthesis, after which field 3 starts.
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const boot = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))?.[1]);
    // USER_HZ is 100 on every Linux architecture Node runs on.
    return Number.isFinite(ticks) && Number.isFinite(boot) ? boot * 1000 + ticks * 10 : null;
  } catch {
    return null;
  }
}

/**
 * Whether a holder is gone. On this host: its pid is dead, or now belongs to a process started after the
 * lock was taken (the pid was reused); a live holder keeps its lock however old its heartbeat, since a
 * stopped (Ctrl-Z) or busy process must not have a second writer start beside it. From another host:
 * its heartbeat is older than staleMs.
 */
export function lockIsStale(h: LockHolder, staleMs: number = DEFAULT_STALE_MS, now: number = Date.now()): boolean {
  if (h.host === os.hostname() && h.pid > 0 && h.pid !== process.pid) {
    if (!pidAlive(h.pid)) return true;
    const born = pidStartedMs(h.pid);
    const taken = Date.parse(h.started);
    // 5 s of slack for the boot time's whole seconds and the clock's steps.
    return born !== null && Number.isFinite(taken) && born > taken + 5000;
  }
  // Our own pid: ours if we hold it; else a predecessor that had the same pid (a container restarted in
  // the same pod, where the worker is pid 1 again) and is certainly dead.
  if (h.host === os.hostname() && h.pid === process.pid) return ![...held].some((l) => l.holder.token === h.token);
  const beat = Date.parse(h.heartbeat);
  return !Number.isFinite(beat) || now - beat > staleMs;
}

function newHolder(purpose: string): LockHolder {
  const now = new Date().toISOString();
  return { host: os.hostname(), pid: process.pid, started: now, heartbeat: now, purpose, token: randomBytes(8).toString('hex') };
}

/**
 * Creates `file` holding `text` unless it exists, atomically: the text is written to a private file
 * first and linked into place (link fails on an existing name, like O_EXCL). A reader therefore never
 * sees a lock file that exists but is still empty, which it would have to report as unreadable (three
 * runs started at one instant hit exactly that with open('wx') then write). Filesystems without hard
 * links fall back to open('wx').
 */
function createExclusive(file: string, text: string): boolean {
  const tmp = `${file}.${HOST}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeSynced(tmp, 'w', text);
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  try {
    writeSynced(file, 'wx', text);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  return true;
}

function writeSynced(file: string, flags: 'w' | 'wx', text: string): void {
  const fd = fs.openSync(file, flags, 0o644);
  try {
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** This host in private files' names (sweepPrivateFiles tells its own from other hosts' by it): the temp files' spelling. */
const HOST = TEMP_HOST;

/** `<file>[.break].[<host>.]<pid>.<hex>.tmp`: createExclusive's private files for `file` (the host, the pid). */
function privateFilePattern(file: string): RegExp {
  const base = path.basename(file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${base}(?:\\.break)?\\.(?:(.+)\\.)?(\\d+)\\.[0-9a-f]{8}\\.tmp$`);
}

/**
 * Whether `name`, an entry of `file`'s folder, belongs to the lock `file`: the lock itself, its
 * `.break`, or a private file of either. A folder's owner skips these when it asks what else the
 * folder holds: a racer's private file may sit there for a moment before it is linked and removed.
 */
export function isLockEntry(file: string, name: string): boolean {
  const base = path.basename(file);
  return name === base || name === `${base}.break` || privateFilePattern(file).test(name);
}

/**
 * Removes the private files of createExclusive (for `file` and its `.break`) that a process killed
 * between writing and linking one left behind: `<file>[.break].<host>.<pid>.<hex>.tmp`. On this host
 * those whose pid is dead; from another host, or named without a host (as earlier versions wrote
 * them), those older than PRIVATE_STALE_MS, since a pid means nothing across hosts sharing a folder.
 */
export function sweepPrivateFiles(file: string, now: number = Date.now()): void {
  const dir = path.dirname(file);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  const own = privateFilePattern(file);
  for (const name of names) {
    const m = own.exec(name);
    if (!m) continue;
    const p = path.join(dir, name);
    try {
      const abandoned = m[1] === HOST ? !pidAlive(Number(m[2])) : now - fs.statSync(p).mtimeMs > PRIVATE_STALE_MS;
      if (abandoned) fs.rmSync(p, { force: true });
    } catch {
      // gone meanwhile (its writer linked and removed it, or another sweep did)
    }
  }
}

/** Removes `file` if it still records the stale holder we saw; serialised by `<file>.break`. */
function breakStale(file: string, seen: LockHolder): void {
  const breaker = `${file}.break`;
  if (!createExclusive(breaker, String(process.pid))) {
    try {
      if (Date.now() - fs.statSync(breaker).mtimeMs > BREAK_STALE_MS) fs.rmSync(breaker, { force: true });
    } catch {
      // another breaker finished meanwhile
    }
    return;
  }
  try {
    const now = readLock(file);
    if (now && now.token === seen.token && now.heartbeat === seen.heartbeat) fs.rmSync(file, { force: true });
  } finally {
    fs.rmSync(breaker, { force: true });
  }
}

const held = new Set<HeldLock>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const l of [...held]) l.release();
  });
}

/** Takes the lock at `file`, or returns null when a live process holds it. Creates the parent folder. */
export function tryAcquireLock(file: string, o: LockOptions): HeldLock | null {
  const staleMs = o.staleMs ?? DEFAULT_STALE_MS;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  sweepPrivateFiles(file);
  const holder = newHolder(o.purpose);
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(file, formatJson(holder))) return startHolding(file, holder, o.heartbeatMs ?? staleMs / 4);
    const other = readLock(file);
    if (other === null) continue; // released between our open and our read
    if (!lockIsStale(other, staleMs)) return null;
    breakStale(file, other);
  }
  return null;
}

/** Takes the lock at `file` or throws a one-line LockHeldError naming the holder. */
export function acquireLock(file: string, o: LockOptions): HeldLock {
  const l = tryAcquireLock(file, o);
  if (l) return l;
  const h = readLock(file);
  if (h) throw new LockHeldError(file, h);
  throw new Error(`${file}: could not take the lock (it changed hands repeatedly); try again`);
}

function startHolding(file: string, holder: LockHolder, heartbeatMs: number): HeldLock {
  let lost = false;
  let released = false;
  let timer: NodeJS.Timeout | undefined;
  const lock: HeldLock = {
    file,
    holder,
    get lost() {
      return lost;
    },
    refresh() {
      if (released || lost) return;
      const now = readLock(file);
      if (!now || now.token !== holder.token) {
        lost = true;
        stop();
        return;
      }
      holder.heartbeat = new Date().toISOString();
      writeFileAtomicSync(file, formatJson(holder));
    },
    release() {
      if (released) return;
      released = true;
      stop();
      held.delete(lock);
      try {
        if (readLock(file)?.token === holder.token) fs.rmSync(file, { force: true });
      } catch {
        // releasing is best effort: a stale lock is taken over anyway
      }
    },
  };
  function stop(): void {
    if (timer) clearInterval(timer);
    timer = undefined;
  }
  if (heartbeatMs > 0) {
    timer = setInterval(() => {
      try {
        lock.refresh();
      } catch {
        // a failed heartbeat write (full disk) is retried next tick; staleness is judged by readers
      }
    }, Math.max(50, heartbeatMs));
    timer.unref();
  }
  held.add(lock);
  installExitHook();
  return lock;
}

// Run folders (open_lth's layout): runs/<name>/config.json is the run's identity; level_<k>/ holds one
// training (level 0 dense, then one per pruning round). Re-using a folder with other settings is an
// error that names the settings that differ, so two experiments never mix in one folder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readJson, writeJsonAtomic } from '../io/atomic.js';
import { listLevelFolders, RUN_FILES, runFile } from '../io/run-paths.js';
import { acquireLock, lockIsStale, LockHeldError, readLock, type HeldLock } from '../io/lock.js';

export { levelDir } from '../io/run-paths.js';

function diffKeys(a: unknown, b: unknown, prefix = ''): string[] {
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
    return [...keys].flatMap((k) => diffKeys((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || '(root)'];
}

/**
 * Creates the run folder with its config, or checks that an existing one was made with the same
 * config. `resume` allows a folder that holds unfinished work.
 */
export async function openRun(dir: string, config: object, o: { resume: boolean }): Promise<void> {
  const file = runFile(dir, 'config');
  if (fs.existsSync(file)) {
    checkRunDir(dir);
    const old = await readJson<object>(file);
    const diff = diffKeys(old, config);
    if (diff.length) {
      throw new Error(`${dir} was made with other settings (${diff.slice(0, 5).join(', ')} differ); use another --out`);
    }
    if (!o.resume && !fs.existsSync(runFile(dir, 'done'))) {
      throw new Error(`${dir} holds an unfinished run; pass --resume to continue it or choose another --out`);
    }
    return;
  }
  makeRunDir(dir);
  await writeJsonAtomic(file, config);
}

// statfs(2) magic numbers of kernel pseudo file systems, which cannot hold files (mkdir there fails with
// ENOENT, on which Node's recursive mkdir loops for ever).
const PSEUDO_FS: Record<number, string> = { 0x9fa0: 'procfs', 0x62656572: 'sysfs', 0x1cd1: 'devpts', 0x27e0eb: 'cgroup', 0x63677270: 'cgroup2', 0x64626720: 'debugfs', 0x73636673: 'securityfs', 0x6e736673: 'nsfs' };

/** The deepest folder of `dir`'s path that exists (dir itself when it exists). */
function existingAncestor(dir: string): string {
  let at = path.resolve(dir);
  for (;;) {
    if (fs.existsSync(at)) return at;
    const up = path.dirname(at);
    if (up === at) return at;
    at = up;
  }
}

/**
 * Checks, without writing anything, that `dir` can hold a run: its nearest existing ancestor is a folder
 * we may write in, on a real file system. One-line errors naming --out; called before a run starts.
 */
export function checkRunDir(dir: string, flag = '--out'): void {
  const at = existingAncestor(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(at);
  } catch (e) {
    throw new Error(`${flag} ${dir}: cannot read ${at} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!st.isDirectory()) throw new Error(`${flag} ${dir}: ${at} is ${at === path.resolve(dir) ? 'a file' : 'a file, not a folder'}; a run needs a folder`);
  try {
    const fsType = PSEUDO_FS[Number(fs.statfsSync(at).type)];
    if (fsType) throw new Error(`${flag} ${dir}: ${at} is on ${fsType}, a kernel pseudo file system that cannot hold a run`);
  } catch (e) {
    if ((e as Error).message.startsWith(flag)) throw e;
    // statfs is unavailable on some platforms; the writability check below still applies
  }
  try {
    fs.accessSync(at, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    throw new Error(`${flag} ${dir}: ${at} is not writable`);
  }
}

/**
 * Creates `dir` one component at a time (not with a recursive mkdir, which never returns on /proc),
 * after checkRunDir. Returns the folders it created, outermost first, so a failed start can remove them.
 */
export function makeRunDir(dir: string, flag = '--out'): string[] {
  checkRunDir(dir, flag);
  const target = path.resolve(dir);
  const missing: string[] = [];
  for (let at = target; !fs.existsSync(at); at = path.dirname(at)) missing.unshift(at);
  const made: string[] = [];
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
      made.push(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && fs.statSync(d).isDirectory()) continue;
      throw new Error(`${flag} ${dir}: cannot create ${d} (${code ?? (e as Error).message.split('\n')[0]})`);
    }
  }
  return made;
}

/**
 * Starts writing a run folder: creates it if needed, takes its lock (one writer per folder: a second
 * writer, or a `--resume` of a run that is still live, fails with a one-line error naming the holder),
 * then creates or checks config.json (openRun). Call it after every flag and the dataset have been
 * validated, so that a failed start leaves nothing behind: on any error here, the folders this call
 * created are removed again. Returns the lock; it is released at exit (or by the caller).
 */
export async function startRun(dir: string, config: object, o: { resume: boolean; purpose: string }): Promise<HeldLock> {
  const made = makeRunDir(dir);
  let lock: HeldLock | null = null;
  try {
    if (!made.length) refuseForeignFolder(dir);
    lock = lockRun(dir, o.purpose);
    await openRun(dir, config, o);
    return lock;
  } catch (e) {
    lock?.release();
    for (const d of made.reverse()) {
      try {
        fs.rmdirSync(d); // only when empty: never removes what another process put there meanwhile
      } catch {
        break;
      }
    }
    throw e;
  }
}

/**
 * An existing `--out` must be empty or a run folder: a run written into a folder of other files (a home
 * folder, `/`, a dataset) mixes with them, and the user's files are one rm away from our own. A folder
 * holding only a lock is a run killed before its config was written.
 */
function refuseForeignFolder(dir: string): void {
  if (fs.existsSync(runFile(dir, 'config'))) return;
  const other = fs.readdirSync(dir).filter((n) => n !== RUN_FILES.lock).sort();
  if (other.length) {
    const shown = other.slice(0, 3).map((n) => `'${n}'`).join(', ') + (other.length > 3 ? `, ... (${other.length} entries)` : '');
    throw new Error(`--out ${dir} is not empty and holds no ticketlab run (no ${RUN_FILES.config}; it has ${shown}); choose a new or empty folder`);
  }
}

/** Marks a run folder finished (re-running it is then a no-op). */
export async function markDone(dir: string, summary: object): Promise<void> {
  await writeJsonAtomic(runFile(dir, 'done'), { finishedAt: new Date().toISOString(), ...summary });
}

/**
 * Takes the run folder's lock (`<dir>/.lock`): one writer per run folder. A second writer, or a
 * `--resume` of a run that is still live, fails with a one-line error naming the holder; the lock of a
 * killed process is taken over. Released at exit.
 */
export function lockRun(dir: string, purpose: string): HeldLock {
  const lock = acquireLock(runFile(dir, 'lock'), { purpose });
  // Sweep workers lock level folders, not the run (src/prune/units.ts): one of them training a level of
  // this run is a writer too. Checked after taking the run lock; workers check the run lock after taking
  // a level's, so the two never both go ahead.
  for (const l of listLevelFolders(dir)) {
    const file = runFile(l.dir, 'lock');
    const h = readLock(file);
    if (h && !lockIsStale(h)) {
      lock.release();
      throw new LockHeldError(file, h);
    }
  }
  return lock;
}

// Run folders (open_lth's layout): runs/<name>/config.json is the run's identity; level_<k>/ holds one
// training (level 0 dense, then one per pruning round). Re-using a folder with other settings is an
// error that names the settings that differ, so two experiments never mix in one folder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readJson, writeJsonAtomic } from '../io/atomic.js';
import { listLevelFolders, RUN_FILES, runFile } from '../io/run-paths.js';
import { acquireLock, lockIsStale, LockHeldError, readLock, type HeldLock } from '../io/lock.js';
import { checkRunDir, makeRunDir } from '../io/out-dir.js';

export { checkRunDir, makeRunDir } from '../io/out-dir.js';

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

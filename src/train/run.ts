// Run folders (open_lth's layout): runs/<name>/config.json is the run's identity; level_<k>/ holds one
// training (level 0 dense, then one per pruning round). Re-using a folder with other settings is an
// error that names the settings that differ, so two experiments never mix in one folder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readJson, writeJsonAtomic } from '../io/atomic.js';
import { listLevelFolders, RUN_FILES, runFile } from '../io/run-paths.js';
import { acquireLock, isLockEntry, lockIsStale, LockHeldError, readLock, type HeldLock } from '../io/lock.js';
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
export async function openRun(dir: string, config: object, o: { resume: boolean; log?: (m: string) => void }): Promise<void> {
  const file = runFile(dir, 'config');
  if (fs.existsSync(file)) {
    checkRunDir(dir);
    const old = await readJson<object>(file);
    const diff = diffKeys(old, config);
    if (diff.length && neverTrained(dir)) {
      // A run that stopped at its first step (a NaN, a device limit) saved nothing worth keeping: the
      // corrected command starts it afresh instead of being told the folder is taken.
      clearUntrainedRun(dir);
      (o.log ?? ((m: string) => process.stderr.write(m + '\n')))(
        `${dir}: the run there stopped before its first epoch was saved (${diff.slice(0, 5).join(', ')} differ); starting it afresh with these settings`,
      );
      await writeJsonAtomic(file, config);
      return;
    }
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

/** What a level folder holds once training saved anything (an epoch, metrics, a result). */
const TRAINED_FILES = [RUN_FILES.checkpoint, RUN_FILES.metrics, RUN_FILES.result, RUN_FILES.final, RUN_FILES.best, RUN_FILES.mask, RUN_FILES.done] as const;
/** What a run writes before its first step: all of it follows from config.json, so it may be remade. */
const BEFORE_FIRST_STEP = new Set<string>([RUN_FILES.init, RUN_FILES.rewind, RUN_FILES.start, RUN_FILES.kernels, RUN_FILES.sparseKernels, RUN_FILES.reinit]);

/**
 * Whether a run folder holds nothing but what its start wrote (config.json, the lock, level folders with
 * initial weights and kernel choices): no level trained an epoch, none was pruned, none finished.
 */
export function neverTrained(dir: string): boolean {
  if (fs.existsSync(runFile(dir, 'done'))) return false;
  const levels = listLevelFolders(dir);
  for (const entry of fs.readdirSync(dir)) {
    if (entry === RUN_FILES.config || isLockEntry(runFile(dir, 'lock'), entry) || entry.startsWith(`${RUN_FILES.config}.tmp-`)) continue;
    if (!levels.some((l) => path.relative(dir, l.dir).split(path.sep)[0] === entry)) return false;
  }
  return levels.every((l) => fs.readdirSync(l.dir).every((f) => BEFORE_FIRST_STEP.has(f) && !TRAINED_FILES.includes(f as never)));
}

/** Removes what a never-trained run wrote (neverTrained(dir) holds), keeping config.json and the lock. */
function clearUntrainedRun(dir: string): void {
  const levels = listLevelFolders(dir);
  for (const l of levels) {
    for (const f of fs.readdirSync(l.dir)) fs.rmSync(path.join(l.dir, f), { force: true });
    fs.rmdirSync(l.dir);
  }
  // oneshot_*/ and controls/<kind>/ parents left empty by the loop above.
  for (const l of levels) {
    for (let at = path.dirname(l.dir); at !== path.resolve(dir) && at !== dir; at = path.dirname(at)) {
      try {
        fs.rmdirSync(at);
      } catch {
        break;
      }
    }
  }
}

/**
 * Starts writing a run folder: creates it if needed, takes its lock (one writer per folder: a second
 * writer, or a `--resume` of a run that is still live, fails with a one-line error naming the holder),
 * then creates or checks config.json (openRun). Call it after every flag and the dataset have been
 * validated, so that a failed start leaves nothing behind: on any error here, the folders this call
 * created are removed again. Returns the lock; it is released at exit (or by the caller).
 */
export async function startRun(dir: string, config: object, o: { resume: boolean; purpose: string; log?: (m: string) => void }): Promise<HeldLock> {
  const made = makeRunDir(dir);
  let lock: HeldLock | null = null;
  try {
    // The lock first: a writer that started at the same instant is then refused as "in use", instead of
    // its half-written config.json.tmp-* making this folder look like someone else's files.
    lock = lockRun(dir, o.purpose);
    if (!made.length) refuseForeignFolder(dir);
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
  // A config.json.tmp-* is a run killed while writing its config (we hold the lock: no live writer).
  // The lock's own entries, a racer's private lock file among them (written aside, then linked and
  // removed), are not the user's files.
  const other = fs.readdirSync(dir).filter((n) => !isLockEntry(runFile(dir, 'lock'), n) && !n.startsWith(`${RUN_FILES.config}.tmp-`)).sort();
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

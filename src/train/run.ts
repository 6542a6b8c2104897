// Run folders (open_lth's layout): runs/<name>/config.json is the run's identity; level_<k>/ holds one
// training (level 0 dense, then one per pruning round). Re-using a folder with other settings is an
// error that names the settings that differ, so two experiments never mix in one folder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readJson, writeJsonAtomic } from '../io/atomic.js';
import { runFile } from '../io/run-paths.js';
import { acquireLock, type HeldLock } from '../io/lock.js';

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
  fs.mkdirSync(dir, { recursive: true });
  await writeJsonAtomic(file, config);
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
  return acquireLock(runFile(dir, 'lock'), { purpose });
}

// Time budgets for tests. No test may depend on how fast the machine is: a timeout only guards against a
// hang, so it must hold on a 2-core machine that four other CPU-bound processes share. Every timeout in
// the suite is a budget here: a base (what a loaded 2-core machine needs, with room to spare) times
// TIME_SCALE, the machine's load per core when the run starts (at least 1), so a busier machine gets
// proportionally more time and an idle one still catches a hang within minutes.
//
// TICKETLAB_TIME_SCALE=N sets the scale by hand (vitest.config.ts also sets it, once, for every worker).
import * as fs from 'node:fs';
import * as os from 'node:os';

/** Runnable processes (from /proc/loadavg: now, not a minute's average) and the 1-minute load, per core. */
export function loadPerCore(): number {
  const cores = Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  let runnable = 0;
  try {
    // "0.52 0.58 0.59 3/467 12345": the fourth field is running/total scheduling entities, ourselves included.
    runnable = Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[3].split('/')[0]) - 1;
  } catch {
    // not Linux: the load average alone
  }
  return Math.max(os.loadavg()[0], Number.isFinite(runnable) ? runnable : 0) / cores;
}

function scaleFromEnv(): number | null {
  const v = Number(process.env.TICKETLAB_TIME_SCALE);
  return Number.isFinite(v) && v >= 1 ? v : null;
}

/** The factor every budget is multiplied by: >= 1, at most 20. */
export const TIME_SCALE: number = scaleFromEnv() ?? Math.min(20, Math.max(1, Math.round(loadPerCore() * 10) / 10));

/** `ms` (a budget for a loaded 2-core machine) scaled to this machine's load. */
export function budget(ms: number): number {
  return Math.round(ms * TIME_SCALE);
}

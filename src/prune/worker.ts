// A sweep worker: claims the next ready unit (units.ts), runs it, and takes the next, until every unit
// is done. Any number of workers, on any hosts that share the sweep's folder, cooperate through the
// files alone (no server): a unit is claimed by its level folder's lock, finished by its result.json.
// `ticketlab sweep CONFIG` without --worker is one such worker that also checks the folders first.
//
// A worker that is killed loses only the unit it held: its lock goes stale (dead pid on the same host
// at once, else after the heartbeat timeout), the next worker takes it over, and the level resumes from
// its last checkpoint (bit-identical to an uninterrupted run, see level.ts and trainer.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../data/datasets.js';
import { writeJsonAtomicSync } from '../io/atomic.js';
import { describeHolder } from '../io/lock.js';
import { RUN_FILES, runFile } from '../io/run-paths.js';
import { markDone, openRun } from '../train/run.js';
import { Interrupted } from '../train/trainer.js';
import { runControlLevel, runDenseLevel, runImpLevel, runOneShotLevel, type ExperimentContext } from './imp.js';
import type { PlannedRun, PlannedTraining, SweepPlan } from './sweep.js';
import { claimNext, logEvent, unitStatuses, type UnitFailure } from './units.js';
import type { KernelMode } from '../tensor/sparse-plan.js';

export interface WorkerOptions {
  /** Names this worker in locks, logs and failure records. */
  name: string;
  /** A lock whose heartbeat is older than this is taken over (holders on other hosts). */
  staleMs: number;
  /** How often to look again while every remaining unit is running elsewhere or waits on one. */
  pollMs: number;
  progress: boolean;
  signal?: { stop: boolean };
  log: (m: string) => void;
  /** Kernels of the pruned layers (--kernels; default dense). */
  kernels?: KernelMode;
}

export interface WorkerResult {
  /** Units this worker finished. */
  ran: string[];
  /** Every unit of the sweep is done. */
  allDone: boolean;
  /** Units that failed (by any worker) and those that wait on them. */
  failed: string[];
  blocked: string[];
}

/**
 * Copies a finished dense level_0 from the first scope's run (same model, data, seed and settings:
 * level 0 does not depend on the scope). File by file through temp names, result.json (the done mark)
 * last, so a kill never leaves a copy that looks finished; the level's .lock (our claim) stays.
 */
function copyDense(from: string, to: string, log: (m: string) => void): void {
  const files = fs.readdirSync(from, { withFileTypes: true }).filter((e) => e.isFile() && e.name !== RUN_FILES.lock && e.name !== RUN_FILES.failed && !e.name.includes('.tmp'));
  const ordered = [...files.filter((e) => e.name !== RUN_FILES.result), ...files.filter((e) => e.name === RUN_FILES.result)];
  fs.mkdirSync(to, { recursive: true });
  // Temp files of a copy that was killed half-way.
  for (const e of fs.readdirSync(to)) if (e.includes('.tmp-')) fs.rmSync(path.join(to, e), { force: true });
  for (const e of ordered) {
    const tmp = path.join(to, `${e.name}.tmp-${process.pid}`);
    fs.copyFileSync(path.join(from, e.name), tmp);
    fs.renameSync(tmp, path.join(to, e.name));
  }
  log(`${to}: level 0 (dense) copied from ${from} (same model, data and training; the scope only matters from level 1)`);
}

/** Opens each run's folder and dataset once per worker. */
class RunCache {
  private readonly opened = new Set<string>();
  private readonly datasets = new Map<string, DatasetSplits>();
  constructor(private readonly log: (m: string) => void) {}

  async context(r: PlannedRun, o: WorkerOptions): Promise<ExperimentContext> {
    if (!this.opened.has(r.dir)) {
      await openRun(r.dir, { command: 'imp', ...r.config }, { resume: true });
      this.opened.add(r.dir);
    }
    const key = `${r.dataset.spec}\0${r.size}\0${r.config.train.seed}`;
    let data = this.datasets.get(key);
    if (!data) {
      data = await openDataset(r.dataset.spec, { size: r.size, seed: r.config.train.seed });
      this.log(`data: ${data.name}: train ${data.train.length()}, val ${data.val.length()}, test ${data.test.length()} at ${r.size}x${r.size}`);
      this.datasets.set(key, data);
    }
    // Units always resume: a unit's folder may hold the checkpoint of a worker that was killed.
    return { run: r.dir, data, resume: true, progress: o.progress, signal: o.signal, log: o.log, kernels: o.kernels };
  }
}

async function runUnit(plan: SweepPlan, u: PlannedTraining, cache: RunCache, o: WorkerOptions): Promise<void> {
  const r = plan.runs[u.run];
  const ctx = await cache.context(r, o);
  switch (u.kind) {
    case 'dense':
      await runDenseLevel(r.config, ctx);
      break;
    case 'dense-copy':
      copyDense(u.copiedFrom!, u.dir, o.log);
      break;
    case 'imp':
      await runImpLevel(r.config, ctx, u.level);
      break;
    case 'oneshot':
      await runOneShotLevel(r.config, ctx, u.level, r.scope);
      break;
    case 'control':
      await runControlLevel(r.config, ctx, u.control!, u.level);
      break;
  }
}

/** Marks the run done (done.json) once every one of its units is. Idempotent; any worker may do it. */
async function markRunIfDone(r: PlannedRun): Promise<void> {
  if (fs.existsSync(runFile(r.dir, 'done'))) return;
  if (!r.trainings.every((t) => fs.existsSync(runFile(t.dir, 'result')))) return;
  await markDone(r.dir, { levels: r.config.levels + 1, oneshot: r.oneshotLevels, controls: { kinds: r.controlKinds, levels: r.controlLevels } });
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/**
 * Works until no unit is left: every unit done, or the rest failed or waiting on a failure. While every
 * remaining unit runs elsewhere (or waits on one that does), polls: a holder that dies is taken over.
 * Interrupted (Ctrl-C, SIGTERM) propagates after the unit's state is saved and its lock released.
 */
export async function runWorker(plan: SweepPlan, o: WorkerOptions): Promise<WorkerResult> {
  const cache = new RunCache(o.log);
  const ran: string[] = [];
  const out = plan.config.out;
  let waitingSaid = '';
  for (;;) {
    if (o.signal?.stop) throw new Interrupted(out);
    const claim = claimNext(plan, { purpose: o.name, staleMs: o.staleMs });
    if (!claim) {
      const st = unitStatuses(plan, o.staleMs);
      const left = st.filter((s) => s.state !== 'done');
      const failed = st.filter((s) => s.state === 'failed').map((s) => s.unit.id);
      const blocked = st.filter((s) => s.state === 'blocked').map((s) => s.unit.id);
      const live = left.filter((s) => s.state === 'running' || s.state === 'waiting' || s.state === 'stale' || s.state === 'ready');
      if (!live.length) {
        for (const r of plan.runs) await markRunIfDone(r);
        return { ran, allDone: left.length === 0, failed, blocked };
      }
      const running = st.filter((s) => s.state === 'running');
      const said = `waiting: ${running.length} unit${running.length === 1 ? '' : 's'} running elsewhere (${running.map((s) => s.unit.id).slice(0, 3).join(', ')}${running.length > 3 ? ', ...' : ''}), ${left.length} left`;
      if (said !== waitingSaid) o.log(said);
      waitingSaid = said;
      await sleep(o.pollMs);
      continue;
    }
    waitingSaid = '';
    const { unit: u, lock } = claim;
    const r = plan.runs[u.run];
    if (claim.tookOver) {
      o.log(`${u.id}: taking over from ${describeHolder(claim.tookOver)} (gone)`);
      logEvent(out, { event: 'takeover', unit: u.id, worker: o.name, from: `${claim.tookOver.host}:${claim.tookOver.pid}` });
    }
    logEvent(out, { event: 'claim', unit: u.id, worker: o.name });
    o.log(`${o.name}: ${u.id} (${r.name}: ${u.label})`);
    // A heartbeat that stopped long enough for another worker to take over means two writers: stop ours.
    const watch = setInterval(() => {
      if (lock.lost && o.signal) o.signal.stop = true;
    }, 1000);
    watch.unref();
    try {
      await runUnit(plan, u, cache, o);
      if (lock.lost) throw new Error(`${u.id}: lost the unit's lock to another worker while running it (heartbeat older than the timeout); check the clocks and the timeout`);
      logEvent(out, { event: 'finish', unit: u.id, worker: o.name });
      ran.push(u.id);
      await markRunIfDone(r);
    } catch (e) {
      if (e instanceof Interrupted) {
        logEvent(out, { event: 'interrupted', unit: u.id, worker: o.name });
        throw e;
      }
      const msg = String((e as Error)?.message ?? e).split('\n')[0];
      const failure: UnitFailure = { unit: u.id, error: msg, host: lock.holder.host, pid: process.pid, worker: o.name, at: new Date().toISOString() };
      if (!lock.lost) writeJsonAtomicSync(runFile(u.dir, 'failed'), failure);
      logEvent(out, { event: 'fail', unit: u.id, worker: o.name, error: msg });
      o.log(`${u.id}: failed: ${msg} (recorded in ${runFile(u.dir, 'failed')}; other units go on)`);
    } finally {
      clearInterval(watch);
      lock.release();
    }
  }
}

// The state of a sweep's units on the shared filesystem, and claiming one. Nothing here needs a GPU.
//
// A unit is one level folder (see planSweep). Its state is read from files only, so any process on any
// host that sees the folder sees the same state:
//   done      <level>/result.json exists (fit() writes it last, atomically)
//   failed    <level>/failed.json exists: the one-line error of the worker that gave up on it
//   running   <level>/.lock held by a live worker (io/lock.ts: host, pid, start, heartbeat), or the
//             run folder's .lock held by a live `ticketlab imp/train` working on that run
//   stale     <level>/.lock whose holder is gone (dead pid on this host, or heartbeat older than the
//             timeout): the next worker takes it over and resumes the level from its checkpoint
//   ready     every dependency done
//   waiting   a dependency not done yet; blocked when a dependency failed (or is blocked)
// Claiming is tryAcquireLock on the level's .lock (create-exclusive), then a second look at result.json,
// so a unit another worker finished between our scan and our claim is never run twice.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { readJsonSync } from '../io/atomic.js';
import { DEFAULT_STALE_MS, lockIsStale, readLock, tryAcquireLock, type HeldLock, type LockHolder } from '../io/lock.js';
import { runFile } from '../io/run-paths.js';
import type { PlannedTraining, SweepPlan } from './sweep.js';

export type UnitState = 'done' | 'failed' | 'running' | 'stale' | 'ready' | 'waiting' | 'blocked';

export interface UnitFailure {
  unit: string;
  error: string;
  host: string;
  pid: number;
  worker: string;
  at: string;
}

export interface UnitStatus {
  unit: PlannedTraining;
  state: UnitState;
  /** The lock's holder (running, stale). */
  holder: LockHolder | null;
  failure: UnitFailure | null;
  /** Unfinished dependencies (waiting, blocked). */
  waitingOn: string[];
}

/** A failed.json that cannot be read still marks the unit failed, with what could be read. */
function readFailure(dir: string, id: string): UnitFailure | null {
  const file = runFile(dir, 'failed');
  if (!fs.existsSync(file)) return null;
  try {
    return readJsonSync<UnitFailure>(file);
  } catch (e) {
    return { unit: id, error: `unreadable ${file}: ${(e as Error).message.split('\n')[0]}`, host: '?', pid: 0, worker: '?', at: '?' };
  }
}

/** Every unit's state, in plan order. */
export function unitStatuses(plan: SweepPlan, staleMs: number = DEFAULT_STALE_MS): UnitStatus[] {
  const byId = new Map<string, UnitStatus>();
  const out: UnitStatus[] = [];
  // A run folder locked by `ticketlab train/imp` (the same lock, on the run): its units are not ours.
  const runHolders = plan.runs.map((r) => {
    const h = readLock(runFile(r.dir, 'lock'));
    return h && !lockIsStale(h, staleMs) ? h : null;
  });
  for (const u of plan.units) {
    const done = fs.existsSync(runFile(u.dir, 'result'));
    const failure = done ? null : readFailure(u.dir, u.id);
    const holder = done || failure ? null : (readLock(runFile(u.dir, 'lock')) ?? runHolders[u.run]);
    let state: UnitState;
    let waitingOn: string[] = [];
    if (done) state = 'done';
    else if (failure) state = 'failed';
    else if (holder) state = lockIsStale(holder, staleMs) ? 'stale' : 'running';
    else {
      // Dependencies come earlier in plan order, so their states are known.
      const deps = u.deps.map((d) => byId.get(d)!);
      waitingOn = deps.filter((d) => d.state !== 'done').map((d) => d.unit.id);
      state = deps.some((d) => d.state === 'failed' || d.state === 'blocked') ? 'blocked' : waitingOn.length ? 'waiting' : 'ready';
    }
    const st: UnitStatus = { unit: u, state, holder, failure, waitingOn };
    byId.set(u.id, st);
    out.push(st);
  }
  return out;
}

export interface Claim {
  unit: PlannedTraining;
  lock: HeldLock;
  /** The holder whose stale lock we took over, if any. */
  tookOver: LockHolder | null;
}

/**
 * Claims the first unit (plan order) that is ready, or stale with its dependencies done; null when none
 * can be claimed now. `purpose` names the worker in the lock (what --status prints).
 */
export function claimNext(plan: SweepPlan, o: { purpose: string; staleMs: number; heartbeatMs?: number }): Claim | null {
  const statuses = unitStatuses(plan, o.staleMs);
  const doneIds = new Set(statuses.filter((s) => s.state === 'done').map((s) => s.unit.id));
  for (const st of statuses) {
    if (st.state !== 'ready' && st.state !== 'stale') continue;
    const u = st.unit;
    if (!u.deps.every((d) => doneIds.has(d))) continue;
    const before = readLock(runFile(u.dir, 'lock'));
    const lock = tryAcquireLock(runFile(u.dir, 'lock'), { purpose: `${o.purpose}: ${u.id}`, staleMs: o.staleMs, heartbeatMs: o.heartbeatMs });
    if (!lock) continue;
    // Finished (or given up) by another worker between our scan and our claim.
    if (fs.existsSync(runFile(u.dir, 'result')) || fs.existsSync(runFile(u.dir, 'failed'))) {
      lock.release();
      continue;
    }
    // `ticketlab imp` took the run's lock between our scan and our claim. It looks for live unit locks
    // after taking the run lock (train/run.ts lockRun) and we look at the run lock after taking ours,
    // so at least one of the two sees the other and backs off.
    const runHolder = readLock(runFile(plan.runs[u.run].dir, 'lock'));
    if (runHolder && !lockIsStale(runHolder, o.staleMs)) {
      lock.release();
      continue;
    }
    return { unit: u, lock, tookOver: before && before.token !== lock.holder.token ? before : null };
  }
  return null;
}

/** Removes the failure marks so the units are tried again (`--retry-failed`); returns their ids. */
export function clearFailures(plan: SweepPlan): string[] {
  const out: string[] = [];
  for (const u of plan.units) {
    const f = runFile(u.dir, 'failed');
    if (fs.existsSync(f)) {
      fs.rmSync(f, { force: true });
      out.push(u.id);
    }
  }
  return out;
}

/** The default worker name: host and pid, plus the scheduler's task index when there is one. */
export function defaultWorkerName(env: NodeJS.ProcessEnv = process.env): string {
  const index = env.SLURM_ARRAY_TASK_ID ?? env.JOB_COMPLETION_INDEX;
  const tag = env.SLURM_ARRAY_TASK_ID !== undefined ? `slurm task ${index}` : env.JOB_COMPLETION_INDEX !== undefined ? `k8s index ${index}` : null;
  return `sweep worker${tag ? ` (${tag})` : ''} ${os.hostname()}:${process.pid}`;
}

/** Appends one event line to the sweep's log; one write call, so lines of concurrent workers do not interleave. */
export function logEvent(out: string, event: Record<string, unknown>): void {
  try {
    fs.mkdirSync(out, { recursive: true });
    fs.appendFileSync(runFile(out, 'sweepEvents'), JSON.stringify({ at: new Date().toISOString(), host: os.hostname(), pid: process.pid, ...event }) + '\n');
  } catch {
    // the log is for people; a full disk must not fail the unit
  }
}

/** The sweep's event log, skipping lines that do not parse (a worker killed mid-write). */
export function readEvents(out: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = fs.readFileSync(runFile(out, 'sweepEvents'), 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').flatMap((l) => {
    try {
      const v: unknown = JSON.parse(l);
      return v !== null && typeof v === 'object' ? [v as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

/** "3m 12s" style age of an ISO time, for status lines. */
export function age(iso: string, now = Date.now()): string {
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return '?';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

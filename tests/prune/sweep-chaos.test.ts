// Chaos: three `ticketlab sweep --worker` processes share one tiny sweep while the test SIGKILLs them at
// random moments inside their units and starts them again (every third stop is a SIGTERM instead, as a
// scheduler's cancel or eviction sends: the unit is saved mid-epoch and resumed from there). The finished
// sweep must have every unit done exactly once (one 'finish' event each, one metrics line per epoch) and
// equal, tensor for tensor and metric for metric, the same sweep run by one process. Real processes,
// real lavapipe training.
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { planSweep, readSweepConfig } from '../../src/prune/sweep.js';
import { readEvents } from '../../src/prune/units.js';
import { RUN_FILES } from '../../src/io/run-paths.js';
import { compareSweeps } from '../../src/prune/sweep-compare.js';

const BIN = path.resolve('bin/ticketlab.mjs');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sweep-chaos-'));
const configFile = path.join(root, 'sweep.json');

// Two seeds x two scopes (the second scope copies the dense level): every unit kind, 20 units.
fs.writeFileSync(
  configFile,
  JSON.stringify({
    out: path.join(root, 'unused'),
    models: ['meso4'],
    datasets: [{ name: 'syn', spec: 'synthetic:train=32,val=16,test=16,seed=1' }],
    size: 32,
    scopes: ['global', 'layer'],
    methods: ['imp', 'oneshot', 'controls'],
    train: { epochs: 2, batch: 16, lr: 0.001, patience: 0 },
    imp: { levels: 2, rate: 0.3 },
    oneshot: { levels: [2] },
    controls: { kinds: ['random_prune'], levels: [2] },
    seeds: [0, 1],
  }),
);

function worker(out: string, name: string, logs: string[]): ChildProcess {
  const p = spawn(process.execPath, [BIN, 'sweep', configFile, '--worker', '--out', out, '--poll', '0.2', '--quiet', '--name', name], {
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  p.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  return p;
}

const exited = (p: ChildProcess) => new Promise<number | null>((res) => (p.exitCode !== null || p.signalCode !== null ? res(p.exitCode) : p.once('exit', (c) => res(c))));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deterministic pseudo-random numbers (the test's schedule is reproducible from its seed). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('sweep workers under SIGKILL', () => {
  const single = path.join(root, 'single');
  const chaos = path.join(root, 'chaos');
  let kills = 0;
  let terms = 0;
  const logs: string[] = [];

  beforeAll(async () => {
    // The reference: one worker alone.
    const one = worker(single, 'single', logs);
    expect(await exited(one)).toBe(0);

    // Three workers; kill one that is inside a unit, at a random moment, and start it again.
    const rand = rng(20261129);
    const names = ['w0', 'w1', 'w2'];
    const procs = names.map((n) => worker(chaos, n, logs));
    const deadline = Date.now() + 150_000;
    while (kills + terms < 6 && Date.now() < deadline) {
      await sleep(300 + rand() * 1200);
      const ev = readEvents(chaos);
      // Workers whose last event is a claim: they are training a unit now.
      const busy = names.filter((n, i) => {
        const mine = ev.filter((e) => e.worker === n && e.pid === procs[i].pid);
        return procs[i].exitCode === null && mine.length > 0 && mine[mine.length - 1].event === 'claim';
      });
      if (!busy.length) {
        if (procs.every((p) => p.exitCode !== null)) break;
        continue;
      }
      const i = names.indexOf(busy[Math.floor(rand() * busy.length)]);
      const term = (kills + terms) % 3 === 2;
      procs[i].kill(term ? 'SIGTERM' : 'SIGKILL');
      // a SIGTERM'd worker saves its unit and exits 130 (0 if it was finishing the last one)
      const code = await exited(procs[i]);
      if (term) expect([0, 130], logs.join('').slice(-3000)).toContain(code);
      if (term) terms++;
      else kills++;
      procs[i] = worker(chaos, names[i], logs);
    }
    const codes = await Promise.all(procs.map(exited));
    expect(codes, logs.join('').slice(-3000)).toEqual([0, 0, 0]);
  }, 300_000);

  it('killed workers lost only their units, which others took over', () => {
    expect(kills).toBeGreaterThanOrEqual(3);
    expect(terms).toBeGreaterThanOrEqual(1);
    const ev = readEvents(chaos);
    expect(ev.filter((e) => e.event === 'takeover').length).toBeGreaterThanOrEqual(1);
  });

  it('every unit is done exactly once', () => {
    const plan = planSweep({ ...readSweepConfig(configFile), out: chaos });
    expect(plan.units).toHaveLength(20);
    const finishes = readEvents(chaos).filter((e) => e.event === 'finish');
    for (const u of plan.units) {
      expect(fs.existsSync(path.join(u.dir, RUN_FILES.result)), u.id).toBe(true);
      expect(finishes.filter((e) => e.unit === u.id), u.id).toHaveLength(1);
      expect(fs.existsSync(path.join(u.dir, RUN_FILES.lock)), `${u.id} lock left`).toBe(false);
    }
    expect(finishes).toHaveLength(plan.units.length);
    for (const r of plan.runs) expect(fs.existsSync(path.join(r.dir, RUN_FILES.done)), r.name).toBe(true);
    expect(fs.existsSync(path.join(chaos, RUN_FILES.summary))).toBe(true);
  });

  it('equals the single-process sweep: masks and weights bit for bit, the same metrics', () => {
    expect(compareSweeps(planSweep({ ...readSweepConfig(configFile), out: chaos }), single)).toEqual([]);
  });
});

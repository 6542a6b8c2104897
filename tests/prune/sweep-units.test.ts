// Sweep units without training: seeds in the config and plan, unit dependencies, states read from the
// folder (done, failed, running, stale, ready, waiting, blocked), claiming, --status, and the Slurm and
// Kubernetes files of --emit (structure; kubectl's own YAML parser when kubectl is installed).
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseSweepConfig, planSweep, readSweepConfig, type SweepConfig } from '../../src/prune/sweep.js';
import { claimNext, clearFailures, defaultWorkerName, readEvents, unitStatuses } from '../../src/prune/units.js';
import { runWorker } from '../../src/prune/worker.js';
import { adapterChoice, formatStatus, sweepCommand } from '../../src/cli/sweep.js';
import { k8sJob, shellWord, slurmScript } from '../../src/cli/sweep-emit.js';
import { RUN_FILES } from '../../src/io/run-paths.js';
import { lockIsStale, type LockHolder } from '../../src/io/lock.js';
import { lockRun } from '../../src/train/run.js';

const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `sweep-units-${name}-`));

function config(out: string, extra: Record<string, unknown> = {}): SweepConfig {
  return parseSweepConfig({
    out,
    models: ['meso4'],
    datasets: ['synthetic'],
    scopes: ['global', 'layer'],
    imp: { levels: 2, rate: 0.5 },
    oneshot: { levels: [2] },
    controls: { kinds: ['reinit'], levels: [2] },
    seeds: [0, 1],
    ...extra,
  });
}

const finish = (dir: string) => {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, RUN_FILES.result), '{}');
};

function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString());
}

function holder(h: Partial<LockHolder>): string {
  const now = new Date().toISOString();
  return JSON.stringify({ host: os.hostname(), pid: process.pid, started: now, heartbeat: now, purpose: 'w', token: 'elsewhere', ...h });
}

afterEach(() => vi.restoreAllMocks());

describe('seeds in the config and the plan', () => {
  it('one run per seed and scope, named -s<seed>, each with its training seed', () => {
    const plan = planSweep(config('/x'));
    expect(plan.runs.map((r) => r.name)).toEqual(['meso4-synthetic-global-s0', 'meso4-synthetic-layer-s0', 'meso4-synthetic-global-s1', 'meso4-synthetic-layer-s1']);
    expect(plan.runs.map((r) => r.config.train.seed)).toEqual([0, 0, 1, 1]);
    // shareDense within a seed only
    expect(plan.runs.map((r) => r.denseFrom && path.basename(r.denseFrom))).toEqual([null, 'meso4-synthetic-global-s0', null, 'meso4-synthetic-global-s1']);
    // without seeds: one unsuffixed run per scope, train.seed as given
    const one = planSweep(parseSweepConfig({ out: '/x', models: ['meso4'], datasets: ['synthetic'], train: { seed: 7 } }));
    expect(one.runs.map((r) => [r.name, r.config.train.seed])).toEqual([
      ['meso4-synthetic-global', 7],
      ['meso4-synthetic-layer', 7],
    ]);
  });

  it('reads examples/sweep-seeds.json', () => {
    const c = readSweepConfig('examples/sweep-seeds.json');
    expect(c.seeds).toEqual([0, 1, 2]);
    expect(planSweep(c).runs.map((r) => r.name)).toEqual(['meso4-synthetic-global-s0', 'meso4-synthetic-global-s1', 'meso4-synthetic-global-s2']);
  });

  it('refuses bad seeds with one-line errors naming the key', () => {
    const err = (raw: unknown) => {
      try {
        parseSweepConfig(raw, 'cfg.json');
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    const base = { out: 'o', models: ['meso4'], datasets: ['synthetic'] };
    expect(err({ ...base, seeds: [] })).toBe('cfg.json: seeds must not be empty');
    expect(err({ ...base, seeds: [0, 0] })).toBe("cfg.json: seeds lists '0' twice");
    expect(err({ ...base, seeds: [1.5] })).toMatch(/^cfg\.json: seeds\[0\] must be an integer >= 0, got 1\.5$/);
    expect(err({ ...base, seeds: [1], train: { seed: 2 } })).toBe('cfg.json: train.seed is set but so is seeds; give one of them');
  });
});

describe('units', () => {
  it('every level folder is a unit with its dependencies', () => {
    const plan = planSweep(config('/x'));
    const byId = new Map(plan.units.map((u) => [u.id, u]));
    expect(plan.units).toHaveLength(4 * 5);
    expect(byId.get('meso4-synthetic-global-s0/level_0')!.deps).toEqual([]);
    expect(byId.get('meso4-synthetic-global-s0/level_2')!.deps).toEqual(['meso4-synthetic-global-s0/level_1']);
    expect(byId.get('meso4-synthetic-layer-s0/level_0')).toMatchObject({ kind: 'dense-copy', deps: ['meso4-synthetic-global-s0/level_0'] });
    expect(byId.get('meso4-synthetic-layer-s1/oneshot_layer/level_2')!.deps).toEqual(['meso4-synthetic-layer-s1/level_0']);
    expect(byId.get('meso4-synthetic-global-s1/controls/reinit/level_2')!.deps).toEqual(['meso4-synthetic-global-s1/level_2']);
    // dependencies always come earlier in plan order (one process can run the list front to back)
    const seen = new Set<string>();
    for (const u of plan.units) {
      for (const d of u.deps) expect(seen.has(d), `${u.id} needs ${d}`).toBe(true);
      seen.add(u.id);
    }
  });

  it('states come from the files: done, failed, running, stale, ready, waiting, blocked', () => {
    const out = tmp('states');
    const plan = planSweep(config(out));
    const u = (id: string) => plan.units.find((x) => x.id === id)!;
    finish(u('meso4-synthetic-global-s0/level_0').dir);
    finish(u('meso4-synthetic-global-s0/level_1').dir);
    fs.writeFileSync(path.join(u('meso4-synthetic-global-s0/level_2').dir.replace(/level_2$/, 'level_1'), 'x'), '');
    // level_2 of s0 failed; its control is blocked
    fs.mkdirSync(u('meso4-synthetic-global-s0/level_2').dir, { recursive: true });
    fs.writeFileSync(path.join(u('meso4-synthetic-global-s0/level_2').dir, RUN_FILES.failed), JSON.stringify({ unit: 'x', error: 'bad image data/x.png', host: 'h', pid: 1, worker: 'w', at: 'now' }));
    // the s0 one-shot is running elsewhere (live: our own pid, a token we do not hold would be stale, so another host)
    fs.mkdirSync(u('meso4-synthetic-global-s0/oneshot_global/level_2').dir, { recursive: true });
    fs.writeFileSync(path.join(u('meso4-synthetic-global-s0/oneshot_global/level_2').dir, RUN_FILES.lock), holder({ host: 'gpu-node-7', pid: 4242 }));
    // the s1 dense level's holder died
    fs.mkdirSync(u('meso4-synthetic-global-s1/level_0').dir, { recursive: true });
    fs.writeFileSync(path.join(u('meso4-synthetic-global-s1/level_0').dir, RUN_FILES.lock), holder({ pid: deadPid() }));
    const st = new Map(unitStatuses(plan).map((s) => [s.unit.id, s]));
    expect(st.get('meso4-synthetic-global-s0/level_0')!.state).toBe('done');
    expect(st.get('meso4-synthetic-global-s0/level_2')!.state).toBe('failed');
    expect(st.get('meso4-synthetic-global-s0/controls/reinit/level_2')!.state).toBe('blocked');
    expect(st.get('meso4-synthetic-global-s0/oneshot_global/level_2')!.state).toBe('running');
    expect(st.get('meso4-synthetic-layer-s0/level_0')!.state).toBe('ready');
    expect(st.get('meso4-synthetic-global-s1/level_0')!.state).toBe('stale');
    expect(st.get('meso4-synthetic-global-s1/level_1')).toMatchObject({ state: 'waiting', waitingOn: ['meso4-synthetic-global-s1/level_0'] });

    const text = formatStatus(plan, 60_000);
    expect(text.split('\n')[0]).toBe(`sweep ${out}/: 20 units in 4 runs: 1 running, 1 stale, 1 failed, 1 ready, 13 waiting, 1 blocked, 2 done`);
    expect(text).toMatch(/oneshot_global\/level_2\s+running\s+one-shot global level 2\s+gpu-node-7 pid 4242, since /);
    expect(text).toContain('bad image data/x.png (w, now)');
    expect(text).toContain('--retry-failed');

    // claiming: the first claimable unit in plan order is the ready copy (s0 layer dense), then the stale one
    const a = claimNext(plan, { purpose: 'test', staleMs: 60_000, heartbeatMs: 0 });
    expect(a!.unit.id).toBe('meso4-synthetic-layer-s0/level_0');
    expect(a!.tookOver).toBeNull();
    const b = claimNext(plan, { purpose: 'test', staleMs: 60_000, heartbeatMs: 0 });
    expect(b!.unit.id).toBe('meso4-synthetic-global-s1/level_0');
    expect(b!.tookOver?.purpose).toBe('w');
    // nothing else is ready: the rest wait on these two, on the running one-shot, or on the failure
    expect(claimNext(plan, { purpose: 'test', staleMs: 60_000, heartbeatMs: 0 })).toBeNull();
    a!.lock.release();
    b!.lock.release();

    expect(clearFailures(plan)).toEqual(['meso4-synthetic-global-s0/level_2']);
    expect(unitStatuses(plan).find((s) => s.unit.id === 'meso4-synthetic-global-s0/level_2')!.state).toBe('ready');
  });

  it('a finished unit is never claimed, even when its lock is stale', () => {
    const out = tmp('done');
    const plan = planSweep(config(out, { seeds: [0], scopes: ['global'] }));
    const l0 = plan.units[0];
    finish(l0.dir);
    fs.writeFileSync(path.join(l0.dir, RUN_FILES.lock), holder({ pid: deadPid() }));
    const c = claimNext(plan, { purpose: 't', staleMs: 60_000, heartbeatMs: 0 });
    expect(c!.unit.id).not.toBe(l0.id);
    c!.lock.release();
  });

  it("a run folder locked by 'ticketlab imp' (the same lock, on the run) keeps workers off its units", () => {
    const out = tmp('runlock');
    const plan = planSweep(config(out, { seeds: [0] }));
    fs.mkdirSync(plan.runs[0].dir, { recursive: true });
    fs.writeFileSync(path.join(plan.runs[0].dir, RUN_FILES.lock), holder({ host: 'elsewhere', pid: 99, purpose: 'imp' }));
    const st = unitStatuses(plan);
    expect(st.filter((s) => s.unit.run === 0).every((s) => s.state === 'running' || s.state === 'waiting')).toBe(true);
    expect(st[0]).toMatchObject({ state: 'running', holder: { purpose: 'imp' } });
    // the second scope's dense copy waits on the first scope's dense level, so nothing is claimable
    expect(claimNext(plan, { purpose: 't', staleMs: 60_000, heartbeatMs: 0 })).toBeNull();
  });

  it("and the other way round: a unit a worker holds keeps 'ticketlab imp' (and oneshot, transfer) off its run", () => {
    const out = tmp('unitlock');
    const plan = planSweep(config(out, { seeds: [0] }));
    const c = claimNext(plan, { purpose: 'w0', staleMs: 60_000, heartbeatMs: 0 });
    expect(c!.unit.id).toBe('meso4-synthetic-global-s0/level_0');
    expect(() => lockRun(plan.runs[0].dir, 'ticketlab imp')).toThrow(/level_0 is in use by w0: meso4-synthetic-global-s0\/level_0 \(pid \d+ on .+\); wait for it to finish, or stop it$/);
    // refused without leaving the run lock behind
    expect(fs.existsSync(path.join(plan.runs[0].dir, RUN_FILES.lock))).toBe(false);
    // a deeper unit (a control inside the run) counts too
    c!.lock.release();
    const ctl = plan.units.find((u) => u.kind === 'control' && u.run === 0)!;
    fs.mkdirSync(ctl.dir, { recursive: true });
    fs.writeFileSync(path.join(ctl.dir, RUN_FILES.lock), holder({ host: 'elsewhere', pid: 99, purpose: 'w1' }));
    expect(() => lockRun(plan.runs[0].dir, 'ticketlab oneshot')).toThrow(/controls\/reinit\/level_2 is in use by w1 /);
    // a worker that is gone (stale heartbeat) does not
    fs.writeFileSync(path.join(ctl.dir, RUN_FILES.lock), holder({ host: 'elsewhere', pid: 99, purpose: 'w1', heartbeat: new Date(Date.now() - 3_600_000).toISOString() }));
    lockRun(plan.runs[0].dir, 'ticketlab imp').release();
  });

  it('a failing unit is recorded once, blocks what needs it, and workers do not loop on it', async () => {
    const out = tmp('fail');
    const plan = planSweep(config(out, { seeds: [0], scopes: ['global'], datasets: [path.join(out, 'no-such-data')] }));
    const logs: string[] = [];
    const o = { name: 'w', staleMs: 60_000, pollMs: 10, progress: false, log: (m: string) => logs.push(m) };
    const res = await runWorker(plan, o);
    expect(res.allDone).toBe(false);
    expect(res.ran).toEqual([]);
    expect(res.failed).toEqual(['meso4-no-such-data-global-s0/level_0']);
    expect(res.blocked).toHaveLength(plan.units.length - 1);
    const f = JSON.parse(fs.readFileSync(path.join(plan.units[0].dir, RUN_FILES.failed), 'utf8'));
    expect(f).toMatchObject({ unit: 'meso4-no-such-data-global-s0/level_0', worker: 'w', pid: process.pid });
    expect(f.error).toContain('no-such-data');
    expect(f.error.split('\n')).toHaveLength(1);
    expect(fs.existsSync(path.join(plan.units[0].dir, RUN_FILES.lock))).toBe(false);
    // a second worker finds nothing to do and returns at once, without trying the failed unit again
    const again = await runWorker(plan, o);
    expect(again.ran).toEqual([]);
    expect(readEvents(out).filter((e) => e.event === 'fail')).toHaveLength(1);
    expect(formatStatus(plan, 60_000).split('\n')[0]).toBe(`sweep ${out}/: 5 units in 1 run: 1 failed, 4 blocked`);
  });

  it('a lock with our own pid but a token we do not hold is a dead predecessor (a restarted container)', () => {
    const h = JSON.parse(holder({ token: 'someone-before-us' })) as LockHolder;
    expect(lockIsStale(h, 60_000)).toBe(true);
  });

  it('worker names and adapter choice follow the scheduler', () => {
    expect(defaultWorkerName({ SLURM_ARRAY_TASK_ID: '2' })).toMatch(/^sweep worker \(slurm task 2\) .+:\d+$/);
    expect(defaultWorkerName({ JOB_COMPLETION_INDEX: '0' })).toMatch(/^sweep worker \(k8s index 0\) /);
    expect(adapterChoice('3', {})).toEqual({ index: 3, wraps: false, from: '--adapter' });
    expect(() => adapterChoice('-1', {})).toThrow(/^--adapter '-1' must be an integer >= 0$/);
    expect(adapterChoice(undefined, { CUDA_VISIBLE_DEVICES: '5', SLURM_LOCALID: '1' })).toEqual({ index: 5, wraps: true, from: 'CUDA_VISIBLE_DEVICES' });
    expect(adapterChoice(undefined, { CUDA_VISIBLE_DEVICES: '0,1', SLURM_LOCALID: '1' })).toEqual({ index: 1, wraps: true, from: 'SLURM_LOCALID' });
    expect(adapterChoice(undefined, {})).toBeNull();
  });
});

describe('--emit', () => {
  const common = { config: '/home/u/sweep.json', out: null, workers: 4, gpusPerWorker: 1, name: 'ticketlab-study', workerFlags: ['--lock-timeout', '300'] };

  it('slurm: a job array of workers', () => {
    const s = slurmScript({ ...common, workdir: '/home/u/my project', ticketlab: 'node /opt/tl/bin/ticketlab.mjs', partition: 'gpu', time: '1-00:00:00', cpusPerWorker: 8, mem: '32G', account: null, logDir: '/home/u/runs/slurm' });
    const lines = s.split('\n');
    expect(lines[0]).toBe('#!/bin/bash');
    expect(lines).toContain('#SBATCH --array=0-3');
    expect(lines).toContain('#SBATCH --gres=gpu:1');
    expect(lines).toContain('#SBATCH --partition=gpu');
    expect(lines).toContain('#SBATCH --time=1-00:00:00');
    expect(lines).toContain('#SBATCH --cpus-per-task=8');
    expect(lines).toContain('#SBATCH --output=/home/u/runs/slurm/%A_%a.log');
    expect(lines.some((l) => l.startsWith('#SBATCH --account'))).toBe(false);
    expect(lines).toContain("cd '/home/u/my project'");
    expect(lines).toContain('exec node /opt/tl/bin/ticketlab.mjs sweep /home/u/sweep.json --worker --lock-timeout 300');
    // every #SBATCH line comes before the first command, as sbatch requires
    const firstCmd = lines.findIndex((l) => l && !l.startsWith('#'));
    expect(lines.slice(firstCmd).some((l) => l.startsWith('#SBATCH'))).toBe(false);
    expect(slurmScript({ ...common, gpusPerWorker: 0, workdir: '/w', ticketlab: 'tl', partition: null, time: null, cpusPerWorker: null, mem: null, account: null, logDir: '/l' })).not.toContain('--gres');
    expect(shellWord("it's")).toBe(`'it'\\''s'`);
  });

  it('k8s: an Indexed Job with a shared volume, checked by kubectl when it is installed', () => {
    const y = k8sJob({ ...common, config: 'examples/sweep.json', out: 'runs/x', image: 'registry.example/ticketlab:0.1', pvc: 'runs', mount: '/work', ticketlab: 'ticketlab', namespace: 'ml', cpusPerWorker: 4, mem: '16Gi' });
    for (const l of ['kind: Job', 'apiVersion: batch/v1', '  completionMode: Indexed', '  completions: 4', '  parallelism: 4', '  namespace: ml', '              nvidia.com/gpu: 1', '              memory: "16Gi"']) {
      expect(y.split('\n'), l).toContain(l);
    }
    expect(y).toContain('command: ["ticketlab", "sweep", "examples/sweep.json", "--worker", "--out", "runs/x", "--lock-timeout", "300"]');
    const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
    if (kubectl.status !== 0) return; // not installed: the structure checks above stand alone
    // kubectl's own parser, offline ('create --dry-run=client' needs an API server for discovery).
    const dir = tmp('k8s');
    const file = path.join(dir, 'job.yaml');
    fs.writeFileSync(file, y);
    const r = spawnSync('kubectl', ['label', '--local', '-f', file, 'checked=yes', '-o', 'json'], { encoding: 'utf8', env: { ...process.env, HOME: dir, KUBECONFIG: path.join(dir, 'none') } });
    expect(r.status, r.stderr).toBe(0);
    const job = JSON.parse(r.stdout);
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', completions: 4, parallelism: 4 });
    const pod = job.spec.template.spec;
    expect(pod.containers[0].image).toBe('registry.example/ticketlab:0.1');
    expect(pod.containers[0].volumeMounts[0]).toEqual({ name: 'sweep', mountPath: '/work' });
    expect(pod.volumes[0]).toEqual({ name: 'sweep', persistentVolumeClaim: { claimName: 'runs' } });
    expect(pod.containers[0].resources.limits).toEqual({ 'nvidia.com/gpu': 1, cpu: 4, memory: '16Gi' });
  });

  it('the command writes the file into out and refuses flags of the other scheduler', async () => {
    const dir = tmp('emit');
    const cfg = path.join(dir, 'c.json');
    fs.writeFileSync(cfg, JSON.stringify({ out: path.join(dir, 'runs'), models: ['meso4'], datasets: ['synthetic'], seeds: [0, 1] }));
    const outs: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => (outs.push(String(s)), true));
    expect(await sweepCommand.run([cfg, '--emit', 'slurm', '--workers', '3', '--gpus-per-worker', '0'])).toBe(0);
    const script = fs.readFileSync(path.join(dir, 'runs', RUN_FILES.slurmScript), 'utf8');
    expect(script).toContain('#SBATCH --array=0-2');
    expect(script).toContain(`sweep ${cfg} --worker`);
    expect(outs.join('')).toContain(`submit: sbatch ${path.join(dir, 'runs', RUN_FILES.slurmScript)}`);
    await expect(sweepCommand.run([cfg, '--emit', 'slurm', '--image', 'x'])).rejects.toThrow(/^--image is for --emit k8s, not --emit slurm$/);
    await expect(sweepCommand.run([cfg, '--emit', 'k8s'])).rejects.toThrow(/^--emit k8s needs --image/);
    await expect(sweepCommand.run([cfg, '--emit', 'pbs'])).rejects.toThrow(/^--emit 'pbs' must be slurm or k8s$/);
    await expect(sweepCommand.run([cfg, '--emit', 'k8s', '--image', 'i'])).rejects.toThrow(/^--emit k8s: the config's out .* is outside the working directory; run --emit k8s from the folder that is the volume's root$/);
    await expect(sweepCommand.run([cfg, '--worker', '--status'])).rejects.toThrow(/^sweep: --worker and --status do not go together; give one$/);
  });

  it('--help documents every flag', () => {
    for (const f of ['--worker', '--status', '--report', '--adapter', '--lock-timeout', '--poll', '--retry-failed', '--emit slurm', '--emit k8s', '--workers', '--gpus-per-worker', '--partition', '--time', '--image', '--pvc', '--mount', '--ticketlab', '--file', 'seeds']) {
      expect(sweepCommand.help, f).toContain(f);
    }
  });
});

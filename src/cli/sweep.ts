// `ticketlab sweep <config.json>`: the study's whole grid (models x datasets x seeds x scopes, each with
// IMP, one-shot and controls) from one file, then one report over every run. See src/prune/sweep.ts for
// the grid, src/prune/units.ts and worker.ts for the units that any number of workers share, and
// sweep-emit.ts for the Slurm and Kubernetes files that start such workers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { closeDevice, initDevice, deviceName } from '../tensor/device.js';
import { Interrupted } from '../train/trainer.js';
import { openRun } from '../train/run.js';
import { DEFAULT_STALE_MS, describeHolder, tryAcquireLock } from '../io/lock.js';
import { writeFileAtomic } from '../io/atomic.js';
import { RUN_FILES, runFile } from '../io/run-paths.js';
import { missingDatasets, planSweep, readSweepConfig, type SweepPlan } from '../prune/sweep.js';
import { age, clearFailures, defaultWorkerName, unitStatuses, type UnitState } from '../prune/units.js';
import { runWorker } from '../prune/worker.js';
import { writeRunReport, type RunReport } from '../report/run-report.js';
import { formatTable } from '../util/table.js';
import { parseFlags, type Command } from './args.js';
import { num } from './flags.js';
import { KERNEL_FLAG, KERNEL_FLAG_HELP, CACHE_FLAGS, CACHE_FLAGS_HELP, applyCacheFlags, kernelFlag } from './flags.js';
import { installStopSignal } from './signals.js';
import { printReport } from './report.js';
import { jobName, k8sJob, k8sName, slurmScript, shellWord } from './sweep-emit.js';

const log = (m: string) => process.stderr.write(m + '\n');

const pctS = (v: number) => `${(v * 100).toFixed(1)}%`;

/** The plan as text: settings, one line per run, totals. */
export function formatPlan(plan: SweepPlan): string {
  const c = plan.config;
  const t = c.train;
  const levelsText = (ls: number[]) => (ls.length ? ls.map((k) => `${k} (${pctS(plan.sparsities[k])})`).join(', ') : '-');
  const lines = [
    `sweep: ${plan.runs.length} run${plan.runs.length === 1 ? '' : 's'} into ${c.out}/`,
    ...(c.description ? [`  ${c.description}`] : []),
    `  models ${c.models.join(', ')}; datasets ${c.datasets.map((d) => (d.name === d.spec ? d.name : `${d.name} (${d.spec})`)).join(', ')}; scopes ${c.scopes.join(', ')}${c.granularities ? `; granularities ${c.granularities.join(', ')}` : ''}`,
    `  IMP: ${c.imp.levels} levels, ${c.imp.sparsities ? 'sparsities' : `rate ${c.imp.rate}:`} ${plan.sparsities.map(pctS).join(' -> ')}; rewind ${c.imp.rewind}${c.imp.pruneLast ? '; classifier pruned too' : ''}`,
    `  one-shot: ${c.methods.includes('oneshot') ? `levels ${levelsText(c.oneshotLevels)}` : 'off'}`,
    `  controls: ${c.methods.includes('controls') && c.controlKinds.length ? `${c.controlKinds.join(', ')} at levels ${levelsText(c.controlLevels)}` : 'off'}`,
    `  training: ${t.optimizer} lr ${t.lr}, batch ${t.batch}, up to ${t.epochs} epochs, patience ${t.patience || 'off'}, ${c.seeds ? `seeds ${c.seeds.join(', ')}` : `seed ${t.seed}`}, schedule ${t.schedule}${t.flip ? ', flip' : ''}`,
    '',
  ];
  const rows = plan.runs.map((r) => {
    const own = r.trainings.filter((x) => !x.copiedFrom);
    return {
      run: r.dir,
      model: r.model,
      data: r.dataset.name,
      size: r.size,
      scope: r.scope,
      ...(c.granularities ? { granularity: r.granularity } : {}),
      ...(c.seeds ? { seed: r.seed } : {}),
      dense: r.denseFrom ? `copy of ${path.basename(r.denseFrom)}` : 'trained',
      trainings: own.length,
      finished: own.filter((x) => x.finished).length,
    };
  });
  lines.push(formatTable(rows, ['run', 'model', 'data', { key: 'size', align: 'right' }, 'scope', ...(c.granularities ? ['granularity'] : []), ...(c.seeds ? [{ key: 'seed', align: 'right' as const }] : []), 'dense', { key: 'trainings', align: 'right' }, { key: 'finished', align: 'right' }]));
  const left = plan.trainings - plan.finished;
  lines.push(
    '',
    `total: ${plan.trainings} trainings (${plan.finished} finished, ${left} to run), at most ${left * t.epochs} epochs` +
      (t.patience ? ' (early stopping usually ends them sooner)' : ''),
    `then: report over all runs in ${c.out}/ (summary.csv, plots, report.html)`,
  );
  return lines.join('\n') + '\n';
}

const STATE_ORDER: UnitState[] = ['running', 'stale', 'failed', 'ready', 'waiting', 'blocked', 'done'];

/** `--status`: counts per state, then every unit that is not done (where it runs, since when, why it waits). */
export function formatStatus(plan: SweepPlan, staleMs: number, now = Date.now()): string {
  const st = unitStatuses(plan, staleMs);
  const count = (s: UnitState) => st.filter((x) => x.state === s).length;
  const lines = [
    `sweep ${plan.config.out}/: ${st.length} unit${st.length === 1 ? '' : 's'} in ${plan.runs.length} run${plan.runs.length === 1 ? '' : 's'}: ` +
      STATE_ORDER.filter((s) => count(s) > 0)
        .map((s) => `${count(s)} ${s}`)
        .join(', '),
  ];
  const rows = st
    .filter((x) => x.state !== 'done')
    .sort((a, b) => STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state))
    .map((x) => {
      const h = x.holder;
      let detail = '';
      if (x.state === 'running' && h) detail = `${h.host} pid ${h.pid}, since ${h.started} (${age(h.started, now)}), heartbeat ${age(h.heartbeat, now)} ago`;
      else if (x.state === 'stale' && h) detail = `holder gone: ${describeHolder(h)}; the next worker takes it over`;
      else if (x.state === 'failed' && x.failure) detail = `${x.failure.error} (${x.failure.worker}, ${x.failure.at})`;
      else if (x.state === 'waiting' || x.state === 'blocked') detail = `needs ${x.waitingOn.join(', ')}`;
      return { unit: x.unit.id, state: x.state, what: x.unit.label, detail };
    });
  if (rows.length) lines.push('', formatTable(rows, ['unit', 'state', 'what', 'detail']));
  const failed = count('failed');
  if (failed) lines.push('', `${failed} failed unit${failed === 1 ? '' : 's'}: fix the cause, then start workers with --retry-failed (or delete the ${RUN_FILES.failed} files)`);
  if (count('done') === st.length) lines.push('', `all done; the report: ticketlab sweep <config> --report (writes ${runFile(plan.config.out, 'report')})`);
  return lines.join('\n') + '\n';
}

export const SWEEP_HELP = `ticketlab sweep <config.json> [--resume] [--dry-run] [--out DIR] [--quiet] [--kernels K]
ticketlab sweep <config.json> --worker [--adapter K] [--name NAME] [--lock-timeout SEC] [--poll SEC] [--retry-failed]
ticketlab sweep <config.json> --status | --report
ticketlab sweep <config.json> --emit slurm|k8s --workers N [--gpus-per-worker G] [scheduler flags]

Runs a study's grid from one JSON file: for every dataset x model x seed x scope, an IMP run folder
<out>/<model>-<data>-<scope>[-s<seed>]/ (the layout 'ticketlab imp' writes: config.json, level_<k>/, and
inside it oneshot_<scope>/level_<k>/ and controls/<kind>/level_<k>/), then 'ticketlab report' over all of
them into <out>/ (summary.csv, accuracy_vs_sparsity.svg, auc_vs_sparsity.svg, per-model plots,
report.html). Finished levels are skipped, so a sweep can be extended (more methods or levels) and re-run.

Config keys (only out, models and datasets are required):
  out          folder for the runs and the report (relative to the working directory)
  models       list of meso4 | mesoinception4 | cnn5 | resnet18
  datasets     list of dataset specs (a dataset root or synthetic[:k=v,...]), or objects
               {"name": "ffpp", "spec": "data/FF++", "size": 128}; name names the run folders
               (default: the root's base name, or "synthetic")
  size         input size: a number, or per model {"resnet18": 224, ...} (default 256; 224 for
               resnet18; 64 for synthetic data); a dataset's own size wins
  scopes       ["global", "layer"] (default both)
  methods      ["imp", "oneshot", "controls"] (default all; imp is required)
  train        training settings shared by every run, the keys of 'ticketlab train':
               epochs, batch, lr, optimizer (adam|adamw|sgd), momentum, weightDecay, schedule,
               warmupSteps, patience, seed, flip (defaults: Adam, lr 1e-4, batch 32, 10 epochs, patience 10)
  imp          {levels: 8, rate: 0.2, sparsities: null, rewind: "init", pruneLast: false} (defaults);
               rewind: init | none | epoch:<k> | step:<k>; sparsities: explicit per-level targets
  oneshot      {"sparsities": [0.6, 0.8]} (default: the study's points), each mapped to the IMP level
               nearest to it (60% -> level 4 = 59.0% at rate 0.2); or {"levels": [4, 7]}
  controls     {"kinds": ["reinit", "random_prune"], "levels": "oneshot"} (defaults); levels: "oneshot"
               (the one-shot levels), "all", a list, or "sparsities": [...] like oneshot
  shareDense   true (default): the second scope's run copies the first one's finished dense level 0
               instead of training the identical model again
  seeds        e.g. [0, 1, 2]: every cell once per training seed, runs named <model>-<data>-<scope>-s<seed>
               (instead of train.seed). The report then gives mean +- sd (n) over the seeds in
               summary.csv (per-folder rows in summary_runs.csv), +-1 sd bands in the plots, and
               verdicts that count the spread: a winning ticket's mean is within max(1 point, dense sd)
               of the dense mean, and its mean - sd is above mean + sd of every control at that level.
  granularities  e.g. ["weight", "block:8", "filter"]: every cell once per pruning granularity (see
               'ticketlab imp --help'), runs named <model>-<data>-<scope>-<weight|block8|filter>[-s<seed>];
               with shareDense they share one dense level 0. The report compares them (accuracy vs
               density and vs measured ms per training step)
  description  free text, printed with the plan

One process (no --worker):
  --dry-run    print the plan (runs, levels, number of trainings, finished ones) and exit; no GPU
  --resume     continue unfinished runs (at the level, epoch and batch where they stopped)
  --out DIR    override the config's out
  --quiet      no progress bars
${KERNEL_FLAG_HELP}${CACHE_FLAGS_HELP}
Workers: the sweep is a list of units, one per level folder (dense, IMP level k, one-shot level k,
control at level k, or the copy of a shared dense level), each waiting for what it needs (level k for
level k-1; one-shot for the dense level; a control for its ticket's IMP level). A worker claims the next
ready unit by creating <level>/.lock exclusively (host, pid, start, heartbeat), trains it, and takes
the next, until every unit is done; while the remaining units run elsewhere it waits and polls. A lock
whose holder died (a dead pid on the same host, or a heartbeat older than --lock-timeout) is taken
over and the level resumes from its checkpoint, so a killed worker loses at most the epoch it was in.
Finished units never run twice. Start any number of workers, on any hosts that share <out>.
  --worker            work until no unit is left; the worker that finds everything done writes the report
  --adapter K         use GPU adapter K (0-based, Dawn's order; an index out of range lists them). Default: the
                      scheduler's choice: a single index in CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES or
                      GPU_DEVICE_ORDINAL, else SLURM_LOCALID, modulo the adapters this worker sees
  --name NAME         the worker's name in locks, logs and --status (default: host, pid, Slurm/k8s index)
  --lock-timeout SEC  a lock from another host whose heartbeat is older than this is taken over (default
                      ${DEFAULT_STALE_MS / 1000}); on this host, at once when the holder's pid is gone, never while it lives
  --poll SEC          how often a waiting worker looks again (default 5)
  --retry-failed      clear the failure marks (failed.json) first, so failed units are tried again
  A unit that fails (a bad dataset file, a diverged loss) is marked with <level>/failed.json (the one-line
  error); other units go on, the units that need it are 'blocked', and the worker exits 1 at the end.
  Every claim, finish, failure and takeover is appended to <out>/sweep-events.jsonl.
  --status            print units done / running (where, since when) / stale / failed / ready / waiting;
                      no GPU, changes nothing
  --report            write the report over the runs as they are now (unfinished levels are listed)

Schedulers (write a file into <out>/ and print how to submit it; no GPU):
  --emit slurm        <out>/sweep.sbatch: a job array --array=0-(N-1) whose tasks are workers
  --emit k8s          <out>/sweep-job.yaml: an Indexed Job (completionMode: Indexed, parallelism N) whose
                      pods are workers, sharing a ReadWriteMany volume that holds the config, the data and
                      <out>; run --emit k8s from the folder that is the volume's root (paths stay relative)
  --workers N         number of workers (array tasks / pods); default 2
  --gpus-per-worker G GPUs per worker (Slurm --gres=gpu:G, k8s nvidia.com/gpu: G); default 1, 0 for CPU
  --cpus-per-worker C, --mem M (e.g. 16G)
  --partition P, --time T (e.g. 1-00:00:00), --account A     Slurm only
  --image IMG (required), --pvc NAME (default ticketlab-sweep), --mount PATH (default /work),
  --namespace NS                                             Kubernetes only
  --ticketlab CMD     how the workers start ticketlab (Slurm default: node <this checkout>/bin/ticketlab.mjs;
                      k8s default: ticketlab)
  --file FILE         write the file there instead
  Worker flags given with --emit (--lock-timeout, --poll, --retry-failed) are passed on to the workers.

Ctrl-C (or SIGTERM, as schedulers send) finishes the current step, saves and releases the unit;
'ticketlab sweep <config.json> --resume' (or another --worker) continues.
Examples: examples/sweep-synthetic.json (minutes on a CPU), examples/sweep-seeds.json (3 seeds, tiny),
examples/sweep-study.json (the study). README.md, "Sweeps: seeds, and workers on a cluster", has worked
Slurm and k8s examples.
`;

/** The adapter index: --adapter (strict), else a scheduler's variables (wrapping). */
export function adapterChoice(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): { index: number; wraps: boolean; from: string } | null {
  if (flag !== undefined) return { index: num({ adapter: flag }, 'adapter', { int: true, min: 0 }), wraps: false, from: '--adapter' };
  for (const v of ['CUDA_VISIBLE_DEVICES', 'ROCR_VISIBLE_DEVICES', 'GPU_DEVICE_ORDINAL', 'SLURM_LOCALID']) {
    const s = env[v];
    if (s !== undefined && /^\d+$/.test(s.trim())) return { index: Number(s.trim()), wraps: true, from: v };
  }
  return null;
}

async function writeSweepReport(plan: SweepPlan): Promise<RunReport | null> {
  const dirs = plan.runs.map((r) => r.dir).filter((d) => fs.existsSync(runFile(d, 'config')));
  if (!dirs.length) return null;
  return writeRunReport(dirs, plan.config.out);
}

export const sweepCommand: Command = {
  name: 'sweep',
  summary: 'run a grid of IMP studies (models x datasets x seeds x scopes, one-shot, controls) from a JSON file, alone or as workers on a cluster',
  help: SWEEP_HELP,
  async run(args) {
    const { values, positionals } = parseFlags(
      args,
      {
        resume: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        out: { type: 'string' },
        quiet: { type: 'boolean', default: false },
        worker: { type: 'boolean', default: false },
        status: { type: 'boolean', default: false },
        report: { type: 'boolean', default: false },
        adapter: { type: 'string' },
        name: { type: 'string' },
        'lock-timeout': { type: 'string' },
        poll: { type: 'string' },
        'retry-failed': { type: 'boolean', default: false },
        emit: { type: 'string' },
        workers: { type: 'string' },
        'gpus-per-worker': { type: 'string' },
        'cpus-per-worker': { type: 'string' },
        mem: { type: 'string' },
        partition: { type: 'string' },
        time: { type: 'string' },
        account: { type: 'string' },
        image: { type: 'string' },
        pvc: { type: 'string' },
        mount: { type: 'string' },
        namespace: { type: 'string' },
        ticketlab: { type: 'string' },
        file: { type: 'string' },
        ...KERNEL_FLAG,
        ...CACHE_FLAGS,
      },
      'sweep',
    );
    const kernels = kernelFlag(values);
    applyCacheFlags(values);
    if (positionals.length !== 1) throw new Error(`sweep: give exactly one config file (got ${positionals.length}); see 'ticketlab sweep --help'`);
    const modes = (['dry-run', 'worker', 'status', 'report'] as const).filter((m) => values[m]).map((m) => `--${m}`);
    if (values.emit !== undefined) modes.push('--emit');
    if (modes.length > 1) throw new Error(`sweep: ${modes.join(' and ')} do not go together; give one`);
    const configFile = positionals[0];
    const cfg = readSweepConfig(configFile);
    if (values.out) cfg.out = values.out;
    const staleMs = values['lock-timeout'] !== undefined ? num(values, 'lock-timeout', { min: 1 }) * 1000 : DEFAULT_STALE_MS;
    const pollMs = values.poll !== undefined ? num(values, 'poll', { min: 0.01 }) * 1000 : 5000;
    const adapter = adapterChoice(values.adapter);
    const plan = planSweep(cfg);
    const missing = missingDatasets(cfg);

    if (values['dry-run']) {
      process.stdout.write(formatPlan(plan));
      for (const m of missing) process.stdout.write(`warning: ${configFile}: ${m}\n`);
      return 0;
    }
    if (values.status) {
      process.stdout.write(formatStatus(plan, staleMs));
      return 0;
    }
    if (values.report) {
      const r = await writeSweepReport(plan);
      if (!r) throw new Error(`${cfg.out}: no run of this sweep has started yet; nothing to report`);
      printReport(r, (s) => process.stdout.write(s), false);
      return 0;
    }
    if (values.emit !== undefined) return emit(values, configFile, plan, staleMs);

    if (missing.length) throw new Error(`${configFile}: ${missing[0]}`);
    if (values['retry-failed']) {
      const cleared = clearFailures(plan);
      if (cleared.length) log(`--retry-failed: trying again ${cleared.join(', ')}`);
    }
    // Every run folder must be new or made with these settings (a one-line error now, not a failure per
    // unit later); one process also wants --resume for unfinished folders, as before workers existed.
    for (const r of plan.runs) await openRun(r.dir, { command: 'imp', ...r.config }, { resume: values.worker || values.resume });
    if (!values.worker) log(formatPlan(plan).trimEnd());
    const name = values.name ?? defaultWorkerName();
    const dev = await initDevice(adapter ? { adapterIndex: adapter.index, adapterIndexWraps: adapter.wraps } : {});
    log(`device: ${deviceName(dev.info)}${adapter ? ` (adapter from ${adapter.from}=${adapter.index})` : ''}`);
    const signal = installStopSignal(log);
    let result;
    try {
      result = await runWorker(plan, { name, staleMs, pollMs, progress: !values.quiet && !values.worker, signal, log, kernels });
    } catch (e) {
      if (e instanceof Interrupted) {
        log(`interrupted; the unit's state is saved. Continue with: ticketlab sweep ${configFile} ${values.worker ? '--worker' : '--resume'}${values.out ? ` --out ${values.out}` : ''}`);
        return 130;
      }
      throw e;
    } finally {
      signal.dispose();
      closeDevice();
    }
    log(`${name}: ran ${result.ran.length} unit${result.ran.length === 1 ? '' : 's'}`);
    if (!result.allDone) {
      log(`sweep not finished: ${result.failed.length} failed (${result.failed.join(', ')}), ${result.blocked.length} blocked by them; see 'ticketlab sweep ${configFile} --status'`);
      return 1;
    }
    // Every unit is done: one worker at a time writes the report (the others find it being written).
    const lock = tryAcquireLock(runFile(cfg.out, 'lock'), { purpose: `${name}: sweep report`, staleMs });
    if (!lock) {
      log('all units done; another worker is writing the report');
      return 0;
    }
    try {
      const r = await writeSweepReport(plan);
      if (r) printReport(r, (s) => process.stdout.write(s), false);
    } finally {
      lock.release();
    }
    return 0;
  },
};

type Values = Record<string, string | boolean | undefined>;

async function emit(values: Values, configFile: string, plan: SweepPlan, staleMs: number): Promise<number> {
  const kind = values.emit;
  if (kind !== 'slurm' && kind !== 'k8s') throw new Error(`--emit '${String(kind)}' must be slurm or k8s`);
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : null);
  const workers = values.workers !== undefined ? num(values, 'workers', { int: true, min: 1, max: 100000 }) : 2;
  const gpusPerWorker = values['gpus-per-worker'] !== undefined ? num(values, 'gpus-per-worker', { int: true, min: 0, max: 64 }) : 1;
  const cpusPerWorker = values['cpus-per-worker'] !== undefined ? num(values, 'cpus-per-worker', { int: true, min: 1, max: 4096 }) : null;
  const mem = str('mem');
  if (mem !== null && !/^\d+(\.\d+)?[KMGTkmgt]?i?[Bb]?$/.test(mem)) throw new Error(`--mem '${mem}' must be a size like 16G or 16Gi`);
  const workerFlags = [
    ...(values['lock-timeout'] !== undefined ? ['--lock-timeout', String(staleMs / 1000)] : []),
    ...(values.poll !== undefined ? ['--poll', String(values.poll)] : []),
    ...(values['retry-failed'] ? ['--retry-failed'] : []),
    // The workers read the data through the same cache folder (or none) as asked here.
    ...(values.cache !== undefined ? ['--cache', path.resolve(String(values.cache))] : []),
    ...(values['no-cache'] ? ['--no-cache'] : []),
    ...(values['cache-mem'] !== undefined ? ['--cache-mem', String(values['cache-mem'])] : []),
  ];
  const out = plan.config.out;
  const name = jobName(out);
  for (const k of kind === 'slurm' ? ['image', 'pvc', 'mount', 'namespace'] : ['partition', 'time', 'account']) {
    if (values[k] !== undefined) throw new Error(`--${k} is for --emit ${kind === 'slurm' ? 'k8s' : 'slurm'}, not --emit ${kind}`);
  }
  let text: string;
  if (kind === 'slurm') {
    const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/ticketlab.mjs');
    text = slurmScript({
      config: path.resolve(configFile),
      out: str('out'),
      workers,
      gpusPerWorker,
      name,
      workerFlags,
      workdir: process.cwd(),
      ticketlab: str('ticketlab') ?? `node ${shellWord(bin)}`,
      partition: str('partition'),
      time: str('time'),
      cpusPerWorker,
      mem,
      account: str('account'),
      logDir: path.resolve(out, 'slurm'),
    });
  } else {
    const image = str('image');
    if (!image) throw new Error("--emit k8s needs --image (the container image with ticketlab, e.g. registry.example/ticketlab:0.1)");
    const rel = (p: string, what: string) => {
      const r = path.relative(process.cwd(), path.resolve(p));
      if (r.startsWith('..') || path.isAbsolute(r)) throw new Error(`--emit k8s: ${what} ${p} is outside the working directory; run --emit k8s from the folder that is the volume's root`);
      return r.split(path.sep).join('/');
    };
    const outFlag = str('out');
    rel(out, outFlag !== null ? '--out' : "the config's out");
    text = k8sJob({
      config: rel(configFile, 'the config'),
      out: outFlag !== null ? rel(outFlag, '--out') : null,
      workers,
      gpusPerWorker,
      name: k8sName(name),
      workerFlags,
      image,
      pvc: str('pvc') ?? 'ticketlab-sweep',
      mount: str('mount') ?? '/work',
      ticketlab: str('ticketlab') ?? 'ticketlab',
      namespace: str('namespace'),
      cpusPerWorker,
      mem,
    });
  }
  const file = str('file') ?? runFile(out, kind === 'slurm' ? 'slurmScript' : 'k8sJob');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (kind === 'slurm') fs.mkdirSync(path.resolve(out, 'slurm'), { recursive: true });
  await writeFileAtomic(file, text);
  if (kind === 'slurm') fs.chmodSync(file, 0o755);
  process.stdout.write(
    `wrote ${file}: ${workers} worker${workers === 1 ? '' : 's'} for ${plan.units.length} units\n` +
      (kind === 'slurm' ? `submit: sbatch ${file}\n` : `submit: kubectl apply -f ${file}\n`) +
      `progress: ticketlab sweep ${configFile} --status${values.out ? ` --out ${values.out}` : ''}\n`,
  );
  return 0;
}

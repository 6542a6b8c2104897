// `ticketlab sweep <config.json>`: the study's whole grid (models x datasets x scopes, each with IMP,
// one-shot and controls) from one file, then one report over every run. See src/prune/sweep.ts.
import * as path from 'node:path';
import { closeDevice, initDevice } from '../tensor/device.js';
import { Interrupted } from '../train/trainer.js';
import { missingDatasets, planSweep, readSweepConfig, runSweep, type SweepPlan } from '../prune/sweep.js';
import { writeRunReport } from '../report/run-report.js';
import { formatTable } from '../util/table.js';
import { parseFlags, type Command } from './args.js';
import { KERNEL_FLAG, KERNEL_FLAG_HELP, applyKernelFlag } from './flags.js';
import { installStopSignal } from './signals.js';
import { printReport } from './report.js';

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
    `  models ${c.models.join(', ')}; datasets ${c.datasets.map((d) => (d.name === d.spec ? d.name : `${d.name} (${d.spec})`)).join(', ')}; scopes ${c.scopes.join(', ')}`,
    `  IMP: ${c.imp.levels} levels, ${c.imp.sparsities ? 'sparsities' : `rate ${c.imp.rate}:`} ${plan.sparsities.map(pctS).join(' -> ')}; rewind ${c.imp.rewind}${c.imp.pruneLast ? '; classifier pruned too' : ''}`,
    `  one-shot: ${c.methods.includes('oneshot') ? `levels ${levelsText(c.oneshotLevels)}` : 'off'}`,
    `  controls: ${c.methods.includes('controls') && c.controlKinds.length ? `${c.controlKinds.join(', ')} at levels ${levelsText(c.controlLevels)}` : 'off'}`,
    `  training: ${t.optimizer} lr ${t.lr}, batch ${t.batch}, up to ${t.epochs} epochs, patience ${t.patience || 'off'}, seed ${t.seed}, schedule ${t.schedule}${t.flip ? ', flip' : ''}`,
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
      dense: r.denseFrom ? `copy of ${path.basename(r.denseFrom)}` : 'trained',
      trainings: own.length,
      finished: own.filter((x) => x.finished).length,
    };
  });
  lines.push(formatTable(rows, ['run', 'model', 'data', { key: 'size', align: 'right' }, 'scope', 'dense', { key: 'trainings', align: 'right' }, { key: 'finished', align: 'right' }]));
  const left = plan.trainings - plan.finished;
  lines.push(
    '',
    `total: ${plan.trainings} trainings (${plan.finished} finished, ${left} to run), at most ${left * t.epochs} epochs` +
      (t.patience ? ' (early stopping usually ends them sooner)' : ''),
    `then: report over all runs in ${c.out}/ (summary.csv, plots, report.html)`,
  );
  return lines.join('\n') + '\n';
}

export const SWEEP_HELP = `ticketlab sweep <config.json> [--resume] [--dry-run] [--out DIR] [--quiet] [--kernels K]

Runs a study's grid from one JSON file: for every dataset x model x scope, an IMP run folder
<out>/<model>-<data>-<scope>/ (the layout 'ticketlab imp' writes: config.json, level_<k>/, and inside it
oneshot_<scope>/level_<k>/ and controls/<kind>/level_<k>/), then 'ticketlab report' over all of them into
<out>/ (summary.csv, accuracy_vs_sparsity.svg, auc_vs_sparsity.svg, per-model plots, report.html).
Finished levels are skipped, so a sweep can be extended (more methods or levels) and re-run.

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
  description  free text, printed with the plan

Flags:
  --dry-run    print the plan (runs, levels, number of trainings, finished ones) and exit; no GPU
  --resume     continue unfinished runs (at the level, epoch and batch where they stopped)
  --out DIR    override the config's out
  --quiet      no progress bars
\${KERNEL_FLAG_HELP}
Ctrl-C finishes the current step and saves; 'ticketlab sweep <config.json> --resume' continues.
Examples: examples/sweep-synthetic.json (minutes on a CPU), examples/sweep-study.json (the study).
`;

export const sweepCommand: Command = {
  name: 'sweep',
  summary: 'run a grid of IMP studies (models x datasets x scopes, one-shot, controls) from a JSON file, then report',
  help: SWEEP_HELP,
  async run(args) {
    const { values, positionals } = parseFlags(
      args,
      {
        resume: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        out: { type: 'string' },
        quiet: { type: 'boolean', default: false },
        ...KERNEL_FLAG,
      },
      'sweep',
    );
    applyKernelFlag(values);
    if (positionals.length !== 1) throw new Error(`sweep: give exactly one config file (got ${positionals.length}); see 'ticketlab sweep --help'`);
    const cfg = readSweepConfig(positionals[0]);
    if (values.out) cfg.out = values.out;
    const plan = planSweep(cfg);
    const missing = missingDatasets(cfg);
    if (values['dry-run']) {
      process.stdout.write(formatPlan(plan));
      for (const m of missing) process.stdout.write(`warning: ${positionals[0]}: ${m}\n`);
      return 0;
    }
    if (missing.length) throw new Error(`${positionals[0]}: ${missing[0]}`);
    log(formatPlan(plan).trimEnd());
    const dev = await initDevice();
    log(`device: ${dev.info.device || dev.info.description}${dev.info.isSoftware ? ' (software)' : ''}`);
    const signal = installStopSignal(log);
    let dirs: string[];
    try {
      dirs = await runSweep(plan, { resume: values.resume, progress: !values.quiet, signal, log });
    } catch (e) {
      if (e instanceof Interrupted) {
        log(`${e.message}; continue the sweep with: ticketlab sweep ${positionals[0]} --resume${values.out ? ` --out ${values.out}` : ''}`);
        return 130;
      }
      throw e;
    } finally {
      signal.dispose();
      closeDevice();
    }
    const r = await writeRunReport(dirs, cfg.out);
    printReport(r, (s) => process.stdout.write(s), false);
    return 0;
  },
};

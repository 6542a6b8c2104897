// `ticketlab imp`, `ticketlab oneshot`, `ticketlab transfer`: the lottery-ticket commands.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initDevice, deviceName } from '../tensor/device.js';
import { parseFlags, type Command } from './args.js';
import { KERNEL_FLAG, KERNEL_FLAG_HELP, TRAIN_FLAGS, TRAIN_FLAGS_HELP, kernelFlag, wantsTune, dataOptions, defaultOut, num, parseRunSpec } from './flags.js';
import { withRun } from './signals.js';
import { prepareKernels } from './tune.js';
import { checkRunDir, lockRun, makeRunDir, markDone, startRun, levelDir } from '../train/run.js';
import { checkRewind, levelCount, levelSparsity, parseRewind, runControls, runImp, runOneShot, type ControlKind, type ImpConfig } from '../prune/imp.js';
import { runTransfer } from '../prune/transfer.js';
import { readJson } from '../io/atomic.js';
import { runFile } from '../io/run-paths.js';
import { checkModel, openTrainingData } from './prepare.js';
import { formatMetrics, pct } from './format.js';
import type { Scope } from '../prune/magnitude.js';

const log = (m: string) => process.stderr.write(m + '\n');

const IMP_FLAGS = {
  ...TRAIN_FLAGS,
  levels: { type: 'string', default: '8' },
  rate: { type: 'string', default: '0.2' },
  sparsities: { type: 'string' },
  scope: { type: 'string', default: 'global' },
  rewind: { type: 'string', default: 'init' },
  'prune-last': { type: 'boolean', default: false },
  oneshot: { type: 'string' },
  controls: { type: 'string' },
  'control-levels': { type: 'string' },
} as const;

const IMP_HELP_FLAGS = `Pruning:
  --levels N          pruning rounds after the dense level 0 (default 8: 0.8^8 = 16.8% of weights left)
  --rate X            fraction of the REMAINING prunable weights removed each round (default 0.2)
  --sparsities LIST   explicit target sparsity per level instead of --rate, e.g. 0.2,0.5,0.8
  --scope S           global (one magnitude threshold over all prunable weights) | layer (per layer)
  --rewind R          init (theta_0: the classic lottery ticket) | epoch:<k> | step:<k> (late rewinding:
                      the weights after k epochs/steps of dense training) | none (keep the trained
                      weights and fine-tune: the study's algorithm as written). Optimizer state is reset
                      at every level. (default init)
  --prune-last        also prune the last linear layer (the classifier); off by default
  --oneshot LEVELS    after IMP, one-shot baselines at these levels' sparsities (e.g. 4,8 or 'all')
  --controls KINDS    after IMP, controls: reinit (same mask, new random weights) and/or random_prune
                      (random mask with the ticket's per-layer counts), e.g. reinit,random_prune
  --control-levels L  levels for controls (default: the same as --oneshot, else all)
`;

function parseList(s: string, flag: string, parse: (v: string) => number): number[] {
  const out = s.split(',').filter(Boolean).map((v) => {
    const x = parse(v.trim());
    if (!Number.isFinite(x)) throw new Error(`--${flag} '${s}': '${v}' is not a number`);
    return x;
  });
  if (!out.length) throw new Error(`--${flag} is empty`);
  return out;
}

function parseLevels(s: string | undefined, flag: string, max: number): number[] | null {
  if (s === undefined) return null;
  if (s === 'all') return Array.from({ length: max }, (_, i) => i + 1);
  const ls = parseList(s, flag, Number);
  for (const l of ls) if (!Number.isInteger(l) || l < 1 || l > max) throw new Error(`--${flag}: level ${l} is not in 1..${max}`);
  return ls;
}

export function parseImpConfig(values: Record<string, unknown>): ImpConfig {
  const spec = parseRunSpec(values);
  const scope = String(values.scope);
  if (scope !== 'global' && scope !== 'layer') throw new Error(`--scope '${scope}' is not one of global, layer`);
  parseRewind(String(values.rewind));
  checkRewind({ rewind: String(values.rewind), train: spec.train });
  let sparsities: number[] | null = null;
  if (values.sparsities !== undefined) {
    sparsities = parseList(String(values.sparsities), 'sparsities', Number);
    sparsities.forEach((s, i) => {
      if (!(s > 0 && s < 1)) throw new Error(`--sparsities: ${s} is not in (0, 1)`);
      if (i > 0 && s <= sparsities![i - 1]) throw new Error('--sparsities must increase: pruned weights never return');
    });
  }
  return {
    ...spec,
    levels: sparsities ? sparsities.length : num(values, 'levels', { int: true, min: 0, max: 100 }),
    rate: num(values, 'rate', { min: 0.001, max: 0.999 }),
    sparsities,
    scope: scope as Scope,
    rewind: String(values.rewind),
    pruneLast: !!values['prune-last'],
  };
}

/**
 * Everything `imp` checks before it touches the run folder: flags, --out, the dataset and its splits, the
 * rewind point. Writes nothing (the fuzz suite holds it to that).
 */
export async function prepareImp(args: string[]) {
  const { values } = parseFlags(args, IMP_FLAGS, 'imp');
  const kernels = kernelFlag(values);
  wantsTune(values); // --tune with --no-tune fails here, before any folder exists
  const cfg = parseImpConfig(values);
  const nLevels = levelCount(cfg);
  const oneshot = parseLevels(values.oneshot, 'oneshot', nLevels);
  const kinds = values.controls ? (values.controls.split(',').filter(Boolean) as ControlKind[]) : [];
  for (const k of kinds) if (k !== 'reinit' && k !== 'random_prune') throw new Error(`--controls '${k}' is not one of reinit, random_prune`);
  const controlLevels = parseLevels(values['control-levels'], 'control-levels', nLevels) ?? oneshot ?? Array.from({ length: nLevels }, (_, i) => i + 1);
  const out = values.out ?? defaultOut(cfg, `imp-${cfg.scope}`);
  checkRunDir(out);
  const data = await openTrainingData(cfg);
  checkRewind(cfg, data.train.length());
  return { values, cfg, nLevels, oneshot, kinds, controlLevels, out, data, kernels };
}

export const impCommand: Command = {
  name: 'imp',
  summary: 'iterative magnitude pruning with rewinding (the lottery-ticket procedure), plus one-shot and controls',
  help: `ticketlab imp [flags]

Level 0 trains the dense model; each next level prunes the previous level's trained weights by
magnitude, rewinds the survivors and retrains. Run folder (--out):
  config.json, level_<k>/{init,start,final}.safetensors, mask.safetensors (<layer>.weight_mask),
  sparsity.json (per layer and total), metrics.jsonl, result.json
  oneshot_<scope>/level_<k>/, controls/{reinit,random_prune}/level_<k>/ when asked for
A killed run resumes with --resume at the level and epoch where it stopped; finished levels are skipped.
Then: 'ticketlab report <run>' for summary.csv, plots and report.html.

${IMP_HELP_FLAGS}
${TRAIN_FLAGS_HELP}`,
  async run(args) {
    const { values, cfg, nLevels, oneshot, kinds, controlLevels, out, data, kernels } = await prepareImp(args);
    const dev = await initDevice();
    log(`device: ${deviceName(dev.info)}`);
    checkModel(cfg);
    await startRun(out, { command: 'imp', ...cfg }, { resume: !!values.resume, purpose: 'ticketlab imp' });
    await prepareKernels(cfg.model, cfg.size, cfg.train.batch, wantsTune(values), log);
    return withRun(async (signal) => {
      log(`data: ${data.name}: train ${data.train.length()}, val ${data.val.length()}, test ${data.test.length()} at ${cfg.size}x${cfg.size}`);
      log(`plan: ${nLevels} levels, sparsities ${[0, ...Array.from({ length: nLevels }, (_, i) => levelSparsity(cfg, i + 1))].map((s) => pct(s)).join(' -> ')}`);
      const ctx = { run: out, data, resume: !!values.resume, progress: !values.quiet, signal, log, kernels };
      const imp = await runImp(cfg, ctx);
      const os = oneshot ? await runOneShot(cfg, ctx, oneshot) : [];
      const cs = kinds.length ? await runControls(cfg, ctx, kinds, controlLevels) : [];
      const lines = [
        ...imp.levels.map(({ level, result }) => `IMP-${cfg.scope} level ${level} (${pct(result.sparsity.sparsity)} pruned): ${result.test ? formatMetrics(result.test) : '-'}`),
        ...os.map(({ level, result }) => `one-shot level ${level} (${pct(result.sparsity.sparsity)}): ${result.test ? formatMetrics(result.test) : '-'}`),
        ...cs.map(({ kind, level, result }) => `${kind} level ${level} (${pct(result.sparsity.sparsity)}): ${result.test ? formatMetrics(result.test) : '-'}`),
      ];
      await markDone(out, { levels: imp.levels.length });
      process.stdout.write(lines.join('\n') + `\nresults in ${out}/ (next: ticketlab report ${out})\n`);
      return 0;
    });
  },
};

export const oneshotCommand: Command = {
  name: 'oneshot',
  summary: 'one-shot pruning baselines from the dense model of an IMP run',
  help: `ticketlab oneshot --run DIR [--levels 4,8 | --sparsities 0.6,0.8] [--scope global|layer] [--resume] [--quiet]

Prunes the dense (level 0) weights of the run straight to each target sparsity, rewinds the same way as
the run's IMP, and retrains with the run's settings. Results: DIR/oneshot_<scope>/level_<k>/.
  --levels L       IMP levels whose sparsity to match (default all of the run's levels)
  --sparsities L   explicit sparsities instead (each must be one of the run's level sparsities or
                   the run must have been made with --sparsities)
  --scope S        global | layer (default the run's scope)
${KERNEL_FLAG_HELP}`,
  async run(args) {
    const { values } = parseFlags(
      args,
      { run: { type: 'string' }, levels: { type: 'string' }, scope: { type: 'string' }, resume: { type: 'boolean', default: false }, quiet: { type: 'boolean', default: false }, ...KERNEL_FLAG },
      'oneshot',
    );
    const kernels = kernelFlag(values);
    if (!values.run) throw new Error('oneshot: --run DIR is required');
    const cfg = await readImpConfig(values.run);
    const levels = parseLevels(values.levels, 'levels', levelCount(cfg)) ?? Array.from({ length: levelCount(cfg) }, (_, i) => i + 1);
    const scope = (values.scope ?? cfg.scope) as Scope;
    if (scope !== 'global' && scope !== 'layer') throw new Error(`--scope '${scope}' is not one of global, layer`);
    if (!fs.existsSync(runFile(levelDir(values.run, 0), 'final'))) throw new Error(`--run ${values.run}: no dense model yet (level_0 is not finished)`);
    const data = await openTrainingData(cfg, `${values.run}'s data`);
    await initDevice();
    lockRun(values.run, 'ticketlab oneshot');
    return withRun(async (signal) => {
      const res = await runOneShot(cfg, { run: values.run!, data, resume: !!values.resume, progress: !values.quiet, signal, log, kernels }, levels, scope);
      process.stdout.write(res.map(({ level, result }) => `one-shot ${scope} level ${level} (${pct(result.sparsity.sparsity)}): ${result.test ? formatMetrics(result.test) : '-'}`).join('\n') + '\n');
      return 0;
    });
  },
};

export async function readImpConfig(run: string): Promise<ImpConfig> {
  const file = runFile(run, 'config');
  if (!fs.existsSync(file)) throw new Error(`${run}: not a run folder (no config.json)`);
  const cfg = await readJson<ImpConfig & { command?: string }>(file);
  if (cfg === null || typeof cfg !== 'object' || cfg.command !== 'imp') throw new Error(`${run}: made by '${cfg?.command ?? '?'}', not 'imp'`);
  // A config.json edited by hand is checked like the flags it came from.
  try {
    return { ...parseImpConfig(configAsFlags(cfg)), command: 'imp' } as ImpConfig;
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

/** The flag values a config.json stands for, so parseImpConfig can check a config read back from disk. */
function configAsFlags(c: ImpConfig): Record<string, unknown> {
  const t = (c.train ?? {}) as Partial<ImpConfig['train']>;
  const str = (v: unknown) => (v === undefined || v === null ? undefined : String(v));
  return {
    model: str(c.model),
    data: str(c.data),
    size: str(c.size),
    batch: str(t.batch),
    epochs: str(t.epochs),
    lr: str(t.lr),
    optimizer: str(t.optimizer),
    momentum: str(t.momentum),
    'weight-decay': str(t.weightDecay),
    schedule: str(t.schedule),
    warmup: str(t.warmupSteps),
    patience: str(t.patience),
    seed: str(t.seed),
    'no-flip': t.flip === false,
    levels: str(c.levels),
    rate: str(c.rate),
    sparsities: Array.isArray(c.sparsities) ? c.sparsities.join(',') : undefined,
    scope: str(c.scope),
    rewind: str(c.rewind),
    'prune-last': c.pruneLast === true,
  };
}

export const transferCommand: Command = {
  name: 'transfer',
  summary: "move a run's winning tickets to another dataset: evaluate them there and retrain them there",
  help: `ticketlab transfer --run DIR --data SPEC [--levels 4,8] [--out DIR] [--resume] [--quiet]

For each level k of the source run (a ticket found on dataset A):
  (a) evaluates the A-trained sparse model (level_k/final.safetensors) on dataset B's test split,
  (b) retrains the ticket (mask + the run's rewind weights) on B,
and trains a dense model on B from the same initial weights, as in the study's transfer table.
Training settings are the source run's. Results: --out (default DIR/transfer-<B>/): level_<k>/ folders,
dense/, transfer.json and transfer.csv.
  --levels L       source levels to transfer (default all)
  --oneshot        also transfer the run's one-shot tickets at those levels (oneshot_<scope>/level_<k>)
${KERNEL_FLAG_HELP}`,
  async run(args) {
    const { values } = parseFlags(
      args,
      {
        run: { type: 'string' },
        data: { type: 'string' },
        levels: { type: 'string' },
        out: { type: 'string' },
        oneshot: { type: 'boolean', default: false },
        resume: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
        ...KERNEL_FLAG,
      },
      'transfer',
    );
    const kernels = kernelFlag(values);
    if (!values.run) throw new Error('transfer: --run DIR is required');
    if (!values.data) throw new Error('transfer: --data SPEC (the target dataset) is required');
    const cfg = await readImpConfig(values.run);
    const levels = parseLevels(values.levels, 'levels', levelCount(cfg)) ?? Array.from({ length: levelCount(cfg) }, (_, i) => i + 1);
    for (const k of levels) if (!fs.existsSync(runFile(levelDir(values.run, k), 'result'))) throw new Error(`${values.run}: level ${k} is not finished`);
    const tag = values.data.startsWith('synthetic') ? values.data.replace(/[^a-z0-9=.]+/gi, '_') : path.basename(path.resolve(values.data));
    const out = values.out ?? path.join(values.run, `transfer-${tag}`);
    checkRunDir(out);
    const data = await openTrainingData({ ...cfg, data: values.data });
    await initDevice();
    makeRunDir(out);
    lockRun(out, 'ticketlab transfer');
    return withRun(async (signal) => {
      const rows = await runTransfer(cfg, {
        source: values.run!,
        out,
        data,
        levels,
        oneshot: !!values.oneshot,
        resume: !!values.resume,
        progress: !values.quiet,
        signal,
        log,
        kernels,
      });
      for (const r of rows) {
        process.stdout.write(
          `${r.method} ${pct(r.sparsity)}: A-trained on B ${r.evaluated ? pct(r.evaluated.accuracy) : '-'}, retrained on B ${r.retrained ? pct(r.retrained.accuracy) : '-'}\n`,
        );
      }
      process.stdout.write(`results in ${out}/\n`);
      return 0;
    });
  },
};

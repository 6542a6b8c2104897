// The study's grid from one config file: models x datasets x scopes, each an IMP run folder
// `<out>/<model>-<data>-<scope>/` (the same layout `ticketlab imp` writes, config.json included, so
// `ticketlab oneshot/transfer/report --run` work on it), with one-shot baselines and controls inside.
//
//   {
//     "out": "runs/study",
//     "models": ["meso4", "cnn5", "resnet18"],
//     "datasets": ["data/OpenForensics", { "name": "ffpp", "spec": "data/FF++", "size": 128 }],
//     "size": { "resnet18": 224 },                     number, per-model map, or absent (defaults)
//     "scopes": ["global", "layer"],
//     "methods": ["imp", "oneshot", "controls"],
//     "train": { "epochs": 30, "batch": 32, "lr": 1e-4, "patience": 10, ... },   TrainSettings keys
//     "imp": { "levels": 8, "rate": 0.2, "sparsities": null, "rewind": "init", "pruneLast": false },
//     "oneshot": { "sparsities": [0.6, 0.8] },         or "levels": [4, 7]: IMP levels whose sparsity to match
//     "controls": { "kinds": ["reinit", "random_prune"], "levels": "oneshot" },  or "all", [k,...], "sparsities"
//     "shareDense": true,
//     "seeds": [0, 1, 2]                               optional: every cell once per seed, runs named ...-s<seed>
//     "granularities": ["weight", "block:8", "filter"] optional: every cell once per granularity
//                                                      (granularity.ts), runs named ...-<scope>-<block8|filter|...>
//   }
//
// One-shot and controls are defined at IMP levels (they prune to, or copy the mask of, IMP level k), so
// target sparsities map to the IMP level nearest to them (60% -> level 4 = 59.0% at rate 0.2).
// shareDense: the dense level 0 depends on neither the scope nor the granularity, so every other
// (scope, granularity) run of a cell starts from a copy of the first one's finished level_0 instead of
// training the same model again.
//
// Relative paths (out, dataset roots) are relative to the working directory, like command-line flags.
// The pure parts (parseSweepConfig, planSweep) need no GPU; runSweep needs an open device.
import { defaultInputSize } from '../nn/models/index.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MODEL_NAMES, type ModelName } from '../nn/models/index.js';
import { DEFAULT_TRAIN, type TrainSettings } from '../train/trainer.js';
import { parseSchedule, type ScheduleSpec } from '../nn/optim/schedule.js';
import { controlDir, levelDir, oneshotDir, runFile } from '../io/run-paths.js';
import { levelSparsity, parseRewind, type ControlKind, type ImpConfig } from './imp.js';
import type { Scope } from './magnitude.js';
import { GRANULARITIES, granularityTag, type Granularity } from './granularity.js';

export type SweepMethod = 'imp' | 'oneshot' | 'controls';

export interface SweepDataset {
  /** Used in run folder names: `<model>-<name>-<scope>`. */
  name: string;
  /** openDataset spec: a dataset root or synthetic[:k=v,...]. */
  spec: string;
  /** Input size for this dataset (overrides the top-level size). */
  size: number | null;
}

export interface SweepImp {
  levels: number;
  rate: number;
  sparsities: number[] | null;
  rewind: string;
  pruneLast: boolean;
  /** --bn-reestimate N; absent = off. */
  bnReestimate?: number;
}

export interface SweepConfig {
  description: string | null;
  out: string;
  models: ModelName[];
  datasets: SweepDataset[];
  size: number | Record<string, number> | null;
  scopes: Scope[];
  methods: SweepMethod[];
  train: TrainSettings;
  imp: SweepImp;
  /** IMP levels of the one-shot baselines (resolved from sparsities when given so); [] without 'oneshot'. */
  oneshotLevels: number[];
  controlKinds: ControlKind[];
  /** IMP levels of the controls; [] without 'controls'. */
  controlLevels: number[];
  shareDense: boolean;
  /** Training seeds, one run per cell each (`<model>-<data>-<scope>-s<seed>`); null: one run with train.seed, unsuffixed. */
  seeds: number[] | null;
  /** Granularities, one run per cell each (`...-<scope>-<tag>`); null: 'weight' only, unsuffixed. */
  granularities: Granularity[] | null;
}

const TOP_KEYS = ['description', 'out', 'models', 'datasets', 'size', 'scopes', 'methods', 'train', 'imp', 'oneshot', 'controls', 'shareDense', 'seeds', 'granularities'] as const;
const IMP_KEYS = ['levels', 'rate', 'sparsities', 'rewind', 'pruneLast', 'bnReestimate'] as const;
const ONESHOT_KEYS = ['levels', 'sparsities'] as const;
const CONTROL_KEYS = ['kinds', 'levels', 'sparsities'] as const;
const DATASET_KEYS = ['name', 'spec', 'size'] as const;
const SCOPES: readonly Scope[] = ['global', 'layer'];
const METHODS: readonly SweepMethod[] = ['imp', 'oneshot', 'controls'];
const CONTROL_KINDS: readonly ControlKind[] = ['reinit', 'random_prune'];
/** The study's one-shot points. */
export const DEFAULT_ONESHOT_SPARSITIES = [0.6, 0.8];
/** How far a requested sparsity may be from the IMP level it is mapped to. */
const SPARSITY_SLACK = 0.025;

type Obj = Record<string, unknown>;

/** Validation with one-line errors that name the file and the key. */
class Check {
  constructor(private readonly source: string) {}
  fail(key: string, msg: string): never {
    throw new Error(`${this.source}: ${key} ${msg}`);
  }
  obj(v: unknown, key: string, known: readonly string[]): Obj {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(key, `must be an object, got ${show(v)}`);
    for (const k of Object.keys(v as Obj)) {
      if (!known.includes(k)) throw new Error(`${this.source}: unknown key '${key === '(top level)' ? k : `${key}.${k}`}' (known: ${known.join(', ')})`);
    }
    return v as Obj;
  }
  num(v: unknown, key: string, o: { int?: boolean; min?: number; max?: number; above?: number; below?: number } = {}): number {
    const ok =
      typeof v === 'number' &&
      Number.isFinite(v) &&
      (!o.int || Number.isInteger(v)) &&
      (o.min === undefined || v >= o.min) &&
      (o.max === undefined || v <= o.max) &&
      (o.above === undefined || v > o.above) &&
      (o.below === undefined || v < o.below);
    if (!ok) {
      const bounds = [
        o.min !== undefined ? `>= ${o.min}` : '',
        o.above !== undefined ? `> ${o.above}` : '',
        o.max !== undefined ? `<= ${o.max}` : '',
        o.below !== undefined ? `< ${o.below}` : '',
      ].filter(Boolean);
      this.fail(key, `must be ${o.int ? 'an integer' : 'a number'}${bounds.length ? ` ${bounds.join(' and ')}` : ''}, got ${show(v)}`);
    }
    return v as number;
  }
  str(v: unknown, key: string): string {
    if (typeof v !== 'string' || v.trim() === '') this.fail(key, `must be a non-empty string, got ${show(v)}`);
    return v as string;
  }
  bool(v: unknown, key: string): boolean {
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${show(v)}`);
    return v as boolean;
  }
  list(v: unknown, key: string, { nonEmpty = true } = {}): unknown[] {
    if (!Array.isArray(v)) this.fail(key, `must be a list, got ${show(v)}`);
    if (nonEmpty && (v as unknown[]).length === 0) this.fail(key, 'must not be empty');
    return v as unknown[];
  }
  oneOf<T extends string>(v: unknown, key: string, allowed: readonly T[]): T {
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) this.fail(key, `must be one of ${allowed.join(', ')}, got ${show(v)}`);
    return v as T;
  }
  unique<T>(items: readonly T[], key: string, name: (t: T) => string = String): void {
    const seen = new Set<string>();
    for (const it of items) {
      const n = name(it);
      if (seen.has(n)) this.fail(key, `lists '${n}' twice`);
      seen.add(n);
    }
  }
}

function show(v: unknown): string {
  const s = v === undefined ? 'nothing' : JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

export function isSynthetic(spec: string): boolean {
  return spec === 'synthetic' || spec.startsWith('synthetic:');
}


function datasetName(spec: string): string {
  if (isSynthetic(spec)) return 'synthetic';
  return spec.replace(/[\\/]+$/, '').split(/[\\/]/).pop() || 'data';
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function parseTrain(c: Check, raw: unknown): TrainSettings {
  if (raw === undefined) return { ...DEFAULT_TRAIN };
  const o = c.obj(raw, 'train', Object.keys(DEFAULT_TRAIN));
  const t: TrainSettings = { ...DEFAULT_TRAIN };
  const has = (k: keyof TrainSettings) => o[k] !== undefined;
  if (has('epochs')) t.epochs = c.num(o.epochs, 'train.epochs', { int: true, min: 1 });
  if (has('batch')) t.batch = c.num(o.batch, 'train.batch', { int: true, min: 1 });
  if (has('lr')) t.lr = c.num(o.lr, 'train.lr', { above: 0 });
  if (has('optimizer')) t.optimizer = c.oneOf(o.optimizer, 'train.optimizer', ['adam', 'adamw', 'sgd'] as const);
  if (has('momentum')) t.momentum = c.num(o.momentum, 'train.momentum', { min: 0, max: 1 });
  if (has('weightDecay')) t.weightDecay = c.num(o.weightDecay, 'train.weightDecay', { min: 0 });
  if (has('schedule')) {
    // Checked by parseSchedule just below before anything reads it.
    t.schedule = c.str(o.schedule, 'train.schedule') as ScheduleSpec;
    try {
      parseSchedule(t.schedule, 1);
    } catch (e) {
      c.fail('train.schedule', `'${t.schedule}' is not one of constant, cosine, step:<steps>:<gamma>`);
    }
  }
  if (has('warmupSteps')) t.warmupSteps = c.num(o.warmupSteps, 'train.warmupSteps', { int: true, min: 0 });
  if (has('patience')) t.patience = c.num(o.patience, 'train.patience', { int: true, min: 0 });
  if (has('seed')) t.seed = c.num(o.seed, 'train.seed', { int: true, min: 0 });
  if (has('flip')) t.flip = c.bool(o.flip, 'train.flip');
  return t;
}

function parseSparsities(c: Check, raw: unknown, key: string, increasing: boolean): number[] {
  const xs = c.list(raw, key).map((v, i) => c.num(v, `${key}[${i}]`, { above: 0, below: 1 }));
  if (increasing) xs.forEach((s, i) => i > 0 && s <= xs[i - 1] && c.fail(key, 'must increase: pruned weights never return'));
  return xs;
}

function parseLevelList(c: Check, raw: unknown, key: string, max: number): number[] {
  const ls = c.list(raw, key).map((v, i) => c.num(v, `${key}[${i}]`, { int: true, min: 1, max }));
  c.unique(ls, key);
  return ls;
}

/** The IMP level whose (nominal) sparsity is nearest to `s`, or an error naming the key. */
function levelNear(c: Check, imp: ImpConfig, nLevels: number, s: number, key: string): number {
  let best = 1;
  for (let k = 2; k <= nLevels; k++) if (Math.abs(levelSparsity(imp, k) - s) < Math.abs(levelSparsity(imp, best) - s)) best = k;
  const got = levelSparsity(imp, best);
  if (Math.abs(got - s) > SPARSITY_SLACK) {
    const pctS = (v: number) => `${(v * 100).toFixed(1)}%`;
    c.fail(key, `${s} is not near any IMP level's sparsity (nearest: level ${best} at ${pctS(got)}; the levels reach ${pctS(levelSparsity(imp, nLevels))}); change it, or set the levels instead`);
  }
  return best;
}

/** Validates and resolves a sweep config (parsed JSON). `source` names it in errors (the file). */
export function parseSweepConfig(raw: unknown, source = 'sweep config'): SweepConfig {
  const c = new Check(source);
  const o = c.obj(raw, '(top level)', TOP_KEYS);
  const description = o.description === undefined ? null : c.str(o.description, 'description');
  const out = c.str(o.out, 'out');

  const models = c.list(o.models, 'models').map((m, i) => c.oneOf(m, `models[${i}]`, MODEL_NAMES));
  c.unique(models, 'models');

  const datasets: SweepDataset[] = c.list(o.datasets, 'datasets').map((d, i) => {
    const key = `datasets[${i}]`;
    if (typeof d === 'string') return { name: datasetName(c.str(d, key)), spec: d, size: null };
    const dobj = c.obj(d, key, DATASET_KEYS);
    const spec = c.str(dobj.spec, `${key}.spec`);
    const name = dobj.name === undefined ? datasetName(spec) : c.str(dobj.name, `${key}.name`);
    return { name, spec, size: dobj.size === undefined ? null : c.num(dobj.size, `${key}.size`, { int: true, min: 8, max: 4096 }) };
  });
  datasets.forEach((d, i) => {
    if (!NAME_RE.test(d.name)) c.fail(`datasets[${i}].name`, `'${d.name}' must be letters, digits, '.', '_' or '-' (it names run folders)`);
  });
  datasets.forEach((d, i) => {
    const j = datasets.findIndex((x) => x.name === d.name);
    if (j < i) c.fail(`datasets[${i}]`, `is named '${d.name}' like datasets[${j}]; give each a distinct "name" (it names run folders)`);
  });

  let size: SweepConfig['size'] = null;
  if (typeof o.size === 'number' || (o.size !== undefined && (o.size === null || typeof o.size !== 'object'))) size = c.num(o.size, 'size', { int: true, min: 8, max: 4096 });
  else if (o.size !== undefined) {
    const so = c.obj(o.size, 'size', MODEL_NAMES);
    size = Object.fromEntries(Object.entries(so).map(([m, v]) => [m, c.num(v, `size.${m}`, { int: true, min: 8, max: 4096 })]));
  }

  const scopes = o.scopes === undefined ? [...SCOPES] : c.list(o.scopes, 'scopes').map((s, i) => c.oneOf(s, `scopes[${i}]`, SCOPES));
  c.unique(scopes, 'scopes');
  const methods = o.methods === undefined ? [...METHODS] : c.list(o.methods, 'methods').map((m, i) => c.oneOf(m, `methods[${i}]`, METHODS));
  c.unique(methods, 'methods');
  if (!methods.includes('imp')) c.fail('methods', "must include 'imp' (one-shot and controls start from the IMP run's levels)");

  const train = parseTrain(c, o.train);

  const io = o.imp === undefined ? {} : c.obj(o.imp, 'imp', IMP_KEYS);
  const sparsities = io.sparsities === undefined || io.sparsities === null ? null : parseSparsities(c, io.sparsities, 'imp.sparsities', true);
  const rewind = io.rewind === undefined ? 'init' : c.str(io.rewind, 'imp.rewind');
  try {
    parseRewind(rewind);
  } catch {
    c.fail('imp.rewind', `'${rewind}' is not one of init, none, epoch:<k>, step:<k>`);
  }
  const imp: SweepImp = {
    levels: sparsities ? sparsities.length : io.levels === undefined ? 8 : c.num(io.levels, 'imp.levels', { int: true, min: 1, max: 100 }),
    rate: io.rate === undefined ? 0.2 : c.num(io.rate, 'imp.rate', { min: 0.001, max: 0.999 }),
    sparsities,
    rewind,
    pruneLast: io.pruneLast === undefined ? false : c.bool(io.pruneLast, 'imp.pruneLast'),
    ...(io.bnReestimate === undefined ? {} : { bnReestimate: c.num(io.bnReestimate, 'imp.bnReestimate', { int: true, min: 0, max: 100000 }) }),
  };
  if (sparsities && io.levels !== undefined && io.levels !== sparsities.length) c.fail('imp.levels', `is ${show(io.levels)} but imp.sparsities lists ${sparsities.length} levels; give one of them`);
  const nominal = impConfigFor({ imp, train } as SweepConfig, models[0], '', 0, 'global');

  let oneshotLevels: number[] = [];
  if (methods.includes('oneshot')) {
    const oo = o.oneshot === undefined ? {} : c.obj(o.oneshot, 'oneshot', ONESHOT_KEYS);
    if (oo.levels !== undefined && oo.sparsities !== undefined) c.fail('oneshot', 'takes levels or sparsities, not both');
    if (oo.levels !== undefined) oneshotLevels = parseLevelList(c, oo.levels, 'oneshot.levels', imp.levels);
    else {
      const key = oo.sparsities === undefined ? 'oneshot.sparsities (default 0.6, 0.8)' : 'oneshot.sparsities';
      const ss = oo.sparsities === undefined ? DEFAULT_ONESHOT_SPARSITIES : parseSparsities(c, oo.sparsities, 'oneshot.sparsities', false);
      oneshotLevels = ss.map((s, i) => levelNear(c, nominal, imp.levels, s, oo.sparsities === undefined ? key : `${key}[${i}]`));
      c.unique(oneshotLevels, 'oneshot.sparsities', (l) => `level ${l}`);
    }
  } else if (o.oneshot !== undefined) c.fail('oneshot', "is set but methods does not list 'oneshot'");

  let controlKinds: ControlKind[] = [];
  let controlLevels: number[] = [];
  if (methods.includes('controls')) {
    const co = o.controls === undefined ? {} : c.obj(o.controls, 'controls', CONTROL_KEYS);
    controlKinds = co.kinds === undefined ? [...CONTROL_KINDS] : c.list(co.kinds, 'controls.kinds').map((k, i) => c.oneOf(k, `controls.kinds[${i}]`, CONTROL_KINDS));
    c.unique(controlKinds, 'controls.kinds');
    if (co.levels !== undefined && co.sparsities !== undefined) c.fail('controls', 'takes levels or sparsities, not both');
    const all = Array.from({ length: imp.levels }, (_, i) => i + 1);
    if (co.sparsities !== undefined) {
      controlLevels = parseSparsities(c, co.sparsities, 'controls.sparsities', false).map((s, i) => levelNear(c, nominal, imp.levels, s, `controls.sparsities[${i}]`));
      c.unique(controlLevels, 'controls.sparsities', (l) => `level ${l}`);
    } else if (co.levels === 'all') controlLevels = all;
    else if (co.levels === 'oneshot' || co.levels === undefined) {
      if (co.levels === 'oneshot' && !methods.includes('oneshot')) c.fail('controls.levels', "is 'oneshot' but methods does not list 'oneshot'");
      controlLevels = methods.includes('oneshot') ? [...oneshotLevels] : all;
    } else if (typeof co.levels === 'string') c.fail('controls.levels', `must be 'all', 'oneshot' or a list of levels, got ${show(co.levels)}`);
    else controlLevels = parseLevelList(c, co.levels, 'controls.levels', imp.levels);
  } else if (o.controls !== undefined) c.fail('controls', "is set but methods does not list 'controls'");

  let seeds: number[] | null = null;
  if (o.seeds !== undefined) {
    seeds = c.list(o.seeds, 'seeds').map((v, i) => c.num(v, `seeds[${i}]`, { int: true, min: 0 }));
    c.unique(seeds, 'seeds');
    if (o.train !== null && typeof o.train === 'object' && (o.train as Obj).seed !== undefined) c.fail('train.seed', 'is set but so is seeds; give one of them');
  }

  let granularities: Granularity[] | null = null;
  if (o.granularities !== undefined) {
    granularities = c.list(o.granularities, 'granularities').map((g, i) => c.oneOf(g, `granularities[${i}]`, GRANULARITIES));
    c.unique(granularities, 'granularities');
  }

  return {
    description,
    out,
    models,
    datasets,
    size,
    scopes,
    methods,
    train,
    imp,
    oneshotLevels,
    controlKinds,
    controlLevels,
    shareDense: o.shareDense === undefined ? true : c.bool(o.shareDense, 'shareDense'),
    seeds,
    granularities,
  };
}

/** Reads and validates a sweep config file; errors name the file (and the key). */
export function readSweepConfig(file: string): SweepConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message.split('\n')[0]}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: invalid JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  return parseSweepConfig(raw, file);
}

export function sizeFor(cfg: Pick<SweepConfig, 'size'>, model: string, d: SweepDataset): number {
  if (d.size !== null) return d.size;
  if (typeof cfg.size === 'number') return cfg.size;
  return cfg.size?.[model] ?? defaultInputSize(model, d.spec);
}

function impConfigFor(cfg: Pick<SweepConfig, 'imp' | 'train'>, model: ModelName, data: string, size: number, scope: Scope, seed = cfg.train.seed, granularity: Granularity = 'weight'): ImpConfig {
  return {
    model,
    data,
    size,
    train: { ...cfg.train, seed },
    levels: cfg.imp.levels,
    rate: cfg.imp.rate,
    sparsities: cfg.imp.sparsities ? [...cfg.imp.sparsities] : null,
    scope,
    rewind: cfg.imp.rewind,
    pruneLast: cfg.imp.pruneLast,
    // Absent at 'weight', as `ticketlab imp` writes it: a sweep's runs stay `imp`-compatible folders.
    ...(granularity !== 'weight' ? { granularity } : {}),
    ...(cfg.imp.bnReestimate ? { bnReestimate: cfg.imp.bnReestimate } : {}),
  };
}

/** What a unit trains: a dense level, a copy of another run's dense level (shareDense), an IMP level, a one-shot level, a control. */
export type UnitKind = 'dense' | 'dense-copy' | 'imp' | 'oneshot' | 'control';

/**
 * One unit of work: a level folder to train (or, for dense-copy, to copy). Units are what sweep workers
 * claim; `deps` must be finished first (level k needs k-1; one-shot needs the dense level; a control
 * needs its ticket's IMP level; a dense copy needs the level it copies).
 */
export interface PlannedTraining {
  /** The level folder relative to the sweep's out, '/'-separated: the unit's name in messages and logs. */
  id: string;
  /** Level folder. */
  dir: string;
  label: string;
  kind: UnitKind;
  level: number;
  /** The control kind, for kind 'control'. */
  control: ControlKind | null;
  /** result.json already there. */
  finished: boolean;
  /** Not trained here: copied from the first scope's run (shareDense). */
  copiedFrom: string | null;
  /** Ids of the units that must be finished first. */
  deps: string[];
  /** The run (index into SweepPlan.runs). */
  run: number;
}

export interface PlannedRun {
  name: string;
  dir: string;
  model: string;
  dataset: SweepDataset;
  scope: Scope;
  /** The training seed (config.train.seed). */
  seed: number;
  granularity: Granularity;
  size: number;
  config: ImpConfig;
  oneshotLevels: number[];
  controlKinds: ControlKind[];
  controlLevels: number[];
  /** The run whose finished level_0 this one copies (shareDense), or null. */
  denseFrom: string | null;
  trainings: PlannedTraining[];
}

export interface SweepPlan {
  config: SweepConfig;
  runs: PlannedRun[];
  /** Every unit of every run, in plan order. */
  units: PlannedTraining[];
  /** Level folders to train (dense levels copied between scopes not counted). */
  trainings: number;
  /** Of which already finished (result.json present). */
  finished: number;
  /** Nominal sparsity of IMP levels 0..L. */
  sparsities: number[];
}

/**
 * A run folder's name: `<model>-<data>-<scope>`, then `-<granularity tag>` when the config lists
 * granularities, then `-s<seed>` when it lists seeds (seeds last: report/seeds.ts strips `-s<seed>`).
 */
export function runName(cfg: Pick<SweepConfig, 'seeds'> & Partial<Pick<SweepConfig, 'granularities'>>, model: string, data: string, scope: Scope, seed: number, granularity: Granularity = 'weight'): string {
  return `${model}-${data}-${scope}${cfg.granularities ? `-${granularityTag(granularity)}` : ''}${cfg.seeds ? `-s${seed}` : ''}`;
}

/** The runs and level folders a sweep makes, in the order one process makes them; reads only result.json presence. */
export function planSweep(cfg: SweepConfig): SweepPlan {
  const runs: PlannedRun[] = [];
  const units: PlannedTraining[] = [];
  const unitId = (dir: string) => path.relative(cfg.out, dir).split(path.sep).join('/');
  const done = (p: string) => fs.existsSync(runFile(p, 'result'));
  for (const d of cfg.datasets) {
    for (const model of cfg.models) {
      for (const seed of cfg.seeds ?? [cfg.train.seed]) {
        let first: string | null = null;
        for (const [scope, granularity] of cfg.scopes.flatMap((sc) => (cfg.granularities ?? (['weight'] as Granularity[])).map((g) => [sc, g] as const))) {
          const name = runName(cfg, model, d.name, scope, seed, granularity);
          const at = granularity === 'weight' ? '' : ` at ${granularity}`;
          const dir = path.join(cfg.out, name);
          const size = sizeFor(cfg, model, d);
          const denseFrom = cfg.shareDense && first ? first : null;
          first ??= dir;
          const runIndex = runs.length;
          const trainings: PlannedTraining[] = [];
          const add = (t: Omit<PlannedTraining, 'id' | 'finished' | 'run' | 'control' | 'copiedFrom'> & Partial<Pick<PlannedTraining, 'control' | 'copiedFrom'>>) =>
            trainings.push({ id: unitId(t.dir), finished: done(t.dir), run: runIndex, control: null, copiedFrom: null, ...t });
          const l0 = levelDir(dir, 0);
          const impId = (k: number) => unitId(levelDir(dir, k));
          if (denseFrom) add({ dir: l0, label: 'dense (copy)', kind: 'dense-copy', level: 0, copiedFrom: levelDir(denseFrom, 0), deps: [unitId(levelDir(denseFrom, 0))] });
          else add({ dir: l0, label: 'dense', kind: 'dense', level: 0, deps: [] });
          for (let k = 1; k <= cfg.imp.levels; k++) add({ dir: levelDir(dir, k), label: `IMP-${scope}${at} level ${k}`, kind: 'imp', level: k, deps: [impId(k - 1)] });
          for (const k of cfg.oneshotLevels) add({ dir: oneshotDir(dir, scope, k), label: `one-shot ${scope}${at} level ${k}`, kind: 'oneshot', level: k, deps: [impId(0)] });
          for (const k of cfg.controlLevels) {
            for (const kind of cfg.controlKinds) add({ dir: controlDir(dir, kind, k), label: `${kind}${at} level ${k}`, kind: 'control', control: kind, level: k, deps: [impId(k)] });
          }
          units.push(...trainings);
          runs.push({
            name,
            dir,
            model,
            dataset: d,
            scope,
            seed,
            granularity,
            size,
            config: impConfigFor(cfg, model, d.spec, size, scope, seed, granularity),
            oneshotLevels: [...cfg.oneshotLevels],
            controlKinds: [...cfg.controlKinds],
            controlLevels: [...cfg.controlLevels],
            denseFrom,
            trainings,
          });
        }
      }
    }
  }
  const counted = units.filter((t) => !t.copiedFrom);
  const nominal = impConfigFor(cfg, cfg.models[0], '', 0, 'global');
  return {
    config: cfg,
    runs,
    units,
    trainings: counted.length,
    finished: counted.filter((t) => t.finished).length,
    sparsities: [0, ...Array.from({ length: cfg.imp.levels }, (_, i) => levelSparsity(nominal, i + 1))],
  };
}

/** Dataset roots that do not exist, as one-line messages naming the key (synthetic specs are skipped). */
export function missingDatasets(cfg: SweepConfig): string[] {
  return cfg.datasets.flatMap((d, i) => (isSynthetic(d.spec) || fs.existsSync(d.spec) ? [] : [`datasets[${i}]: ${d.spec} does not exist`]));
}

// Reads finished (and unfinished) run folders into typed rows, on the host only: no GPU, no weights.
// The folders are the ones src/prune/imp.ts and src/train/trainer.ts write:
//
//   <run>/config.json                      the run's settings (command, model, data, scope, ...)
//   <run>/level_<k>/                       IMP level k (level 0 = dense); `train` runs have level_0 only
//   <run>/oneshot_<scope>/level_<k>/       one-shot pruning to IMP level k's sparsity
//   <run>/controls/<kind>/level_<k>/       controls of IMP level k (reinit, random_prune)
//   <run>/gradcam/                         `ticketlab gradcam` outputs (gradcam.html, grid.png, summary.csv), if any
//
// In each level folder: sparsity.json (SparsityReport), metrics.jsonl (EpochRecord lines, then a final
// {final:true,test,bestEpoch} line), result.json (FitResult; its presence means "finished").
//
// Failure policy: a level without result.json is listed as unfinished (a run still going, or killed);
// a file that is there but not what it should be is a MalformedRunError naming the folder and the file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseJsonl } from '../io/jsonl.js';
import { RUN_FILES, listLevelFolders, runFile, GRADCAM_DIR } from '../io/run-paths.js';
import type { Scope } from '../prune/magnitude.js';

export type { Scope };

/** imp-<scope> and oneshot-<scope> from the run's scope; control kinds as their folder names; dense for `train` runs. */
export type Method = `imp-${Scope}` | `oneshot-${Scope}` | 'reinit' | 'random_prune' | 'dense' | (string & {});

export class MalformedRunError extends Error {
  constructor(
    readonly folder: string,
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${folder}: malformed ${file} (${reason})`);
    this.name = 'MalformedRunError';
  }
}

export interface LayerSparsityRow {
  key: string;
  total: number;
  kept: number;
  sparsity: number;
}

/** One validation point of a training curve (epochs counted from 1). */
export interface CurvePoint {
  epoch: number;
  valAccuracy: number | null;
  valAuc: number | null;
  valLoss: number | null;
  trainAccuracy: number | null;
}

export interface LevelRow {
  /** The run folder as given. */
  run: string;
  runName: string;
  model: string;
  /** Short dataset label (see {@link dataLabel}). */
  data: string;
  scope: Scope | null;
  method: Method;
  level: number;
  dir: string;
  /** result.json present. */
  finished: boolean;
  /** Pruned fraction of the prunable weights (0 for dense); null when sparsity.json is not written yet. */
  sparsity: number | null;
  parametersLeft: number | null;
  parameters: number | null;
  layers: LayerSparsityRow[];
  bestValAccuracy: number | null;
  testAccuracy: number | null;
  testAuc: number | null;
  testBalancedAccuracy: number | null;
  /** 1-based epoch of the best validation loss. */
  epochsToBest: number | null;
  /** Epochs trained (for unfinished levels: epochs logged so far). */
  epochs: number | null;
  imagesPerSecond: number | null;
  stoppedEarly: boolean | null;
  curve: CurvePoint[];
}

export interface GradcamInfo {
  dir: string;
  /** The page `ticketlab gradcam` writes (gradcam.html), if present. */
  html: string | null;
  /** Grid images (names containing "grid"), else the first few PNGs. */
  images: string[];
  /** Per-level attention-change numbers (gradcam/summary.csv), if present. */
  summaryCsv: string | null;
}

export interface CollectedRun {
  dir: string;
  name: string;
  config: Record<string, unknown>;
  command: string;
  model: string;
  data: string;
  /** config.data as written (a path or a synthetic spec). */
  dataSpec: string;
  scope: Scope | null;
  /** done.json present (the driver finished everything it was asked for). */
  done: boolean;
  rows: LevelRow[];
  gradcam: GradcamInfo | null;
}

/** A dataset spec as a short label: `synthetic` for synthetic specs, else the folder's base name. */
export function dataLabel(spec: string): string {
  if (spec === 'synthetic' || spec.startsWith('synthetic:')) return 'synthetic';
  return spec.replace(/[\\/]+$/, '').split(/[\\/]/).pop() || spec;
}

const METHOD_ORDER = ['dense', 'imp-global', 'imp-layer', 'oneshot-global', 'oneshot-layer', 'reinit', 'random_prune'];

/** Sort key for methods: dense/IMP first, then one-shot, then controls, unknown kinds last. */
export function methodRank(m: string): number {
  const i = METHOD_ORDER.indexOf(m);
  return i < 0 ? METHOD_ORDER.length : i;
}

function readText(folder: string, file: string): string {
  try {
    return fs.readFileSync(path.join(folder, file), 'utf8');
  } catch (e) {
    throw new MalformedRunError(folder, file, (e as NodeJS.ErrnoException).code ?? (e as Error).message.split('\n')[0]);
  }
}

function readJsonIn(folder: string, file: string): unknown {
  const text = readText(folder, file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MalformedRunError(folder, file, `invalid JSON: ${(e as Error).message.split('\n')[0]}`);
  }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Field checkers that name the field in the error. */
class Fields {
  constructor(
    private readonly folder: string,
    private readonly file: string,
  ) {}
  fail(reason: string): never {
    throw new MalformedRunError(this.folder, this.file, reason);
  }
  obj(v: unknown, name: string): Obj {
    if (!isObj(v)) this.fail(`${name} is not an object`);
    return v;
  }
  num(o: Obj, key: string, name = key): number {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`${name} is not a number`);
    return v;
  }
  /** A metric that JSON may hold as null (NaN is written as null, e.g. AUC with one class). */
  metric(o: Obj, key: string, name = key): number | null {
    const v = o[key];
    if (v === null || v === undefined) return null;
    if (typeof v !== 'number') this.fail(`${name} is not a number`);
    return Number.isFinite(v) ? v : null;
  }
}

function readConfig(dir: string): Obj {
  if (!fs.existsSync(dir)) throw new Error(`${dir}: no such run folder`);
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder`);
  if (!fs.existsSync(runFile(dir, 'config'))) throw new Error(`${dir}: not a run folder (no config.json)`);
  const cfg = readJsonIn(dir, RUN_FILES.config);
  const f = new Fields(dir, RUN_FILES.config);
  const o = f.obj(cfg, 'the file');
  if (typeof o.model !== 'string') f.fail('model is not a string');
  if (typeof o.data !== 'string') f.fail('data is not a string');
  if (o.scope !== undefined && o.scope !== 'global' && o.scope !== 'layer') f.fail(`scope '${String(o.scope)}' is not global or layer`);
  return o;
}

interface LevelFolder {
  method: Method;
  level: number;
  dir: string;
}

function findLevels(run: string, command: string, scope: Scope | null): LevelFolder[] {
  const mainMethod: Method = scope ? `imp-${scope}` : 'dense';
  return listLevelFolders(run).map((l) => ({
    // A `train` run has level_0 only; anything else under a scope-less run is still listed, as dense.
    method: l.family === 'imp' ? (command === 'train' || !scope ? 'dense' : mainMethod) : l.family === 'oneshot' ? `oneshot-${l.scope as Scope}` : l.kind,
    level: l.level,
    dir: l.dir,
  }));
}

function readSparsity(dir: string): Pick<LevelRow, 'sparsity' | 'parametersLeft' | 'parameters' | 'layers'> | null {
  if (!fs.existsSync(runFile(dir, 'sparsity'))) return null;
  const f = new Fields(dir, RUN_FILES.sparsity);
  const o = f.obj(readJsonIn(dir, RUN_FILES.sparsity), 'the file');
  const sparsity = f.num(o, 'sparsity');
  if (sparsity < 0 || sparsity > 1) f.fail(`sparsity ${sparsity} is not in [0, 1]`);
  if (!Array.isArray(o.layers)) f.fail('layers is not an array');
  const layers = (o.layers as unknown[]).map((l, i) => {
    const lo = f.obj(l, `layers[${i}]`);
    const key = typeof lo.key === 'string' ? lo.key : f.fail(`layers[${i}].key is not a string`);
    return { key, total: f.num(lo, 'total', `layers[${i}].total`), kept: f.num(lo, 'kept', `layers[${i}].kept`), sparsity: f.num(lo, 'sparsity', `layers[${i}].sparsity`) };
  });
  return {
    sparsity,
    parametersLeft: o.parametersLeft === undefined ? null : f.num(o, 'parametersLeft'),
    parameters: o.parameters === undefined ? null : f.num(o, 'parameters'),
    layers,
  };
}

function readCurve(dir: string): { curve: CurvePoint[]; imagesPerSecond: number | null } {
  if (!fs.existsSync(runFile(dir, 'metrics'))) return { curve: [], imagesPerSecond: null };
  let records: unknown[];
  try {
    records = parseJsonl<unknown>(readText(dir, RUN_FILES.metrics), RUN_FILES.metrics).records;
  } catch (e) {
    if (e instanceof MalformedRunError) throw e;
    throw new MalformedRunError(dir, RUN_FILES.metrics, (e as Error).message.replace(/^metrics\.jsonl:/, 'line '));
  }
  const f = new Fields(dir, RUN_FILES.metrics);
  const curve: CurvePoint[] = [];
  const rates: number[] = [];
  records.forEach((r, i) => {
    const o = f.obj(r, `line ${i + 1}`);
    if (o.final === true) return;
    const epoch = f.num(o, 'epoch', `line ${i + 1}: epoch`);
    const val = isObj(o.val) ? o.val : f.fail(`line ${i + 1}: val is not an object`);
    const train = isObj(o.train) ? o.train : null;
    curve.push({
      epoch: epoch + 1,
      valAccuracy: f.metric(val, 'accuracy', `line ${i + 1}: val.accuracy`),
      valAuc: f.metric(val, 'auc', `line ${i + 1}: val.auc`),
      valLoss: f.metric(val, 'loss', `line ${i + 1}: val.loss`),
      trainAccuracy: train ? f.metric(train, 'accuracy', `line ${i + 1}: train.accuracy`) : null,
    });
    if (typeof o.imagesPerSecond === 'number' && Number.isFinite(o.imagesPerSecond)) rates.push(o.imagesPerSecond);
  });
  // A resumed run can log an epoch twice (the second time after the resume point): keep the last.
  const byEpoch = new Map<number, CurvePoint>();
  for (const p of curve) byEpoch.set(p.epoch, p);
  return {
    curve: [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch),
    imagesPerSecond: rates.length ? Math.round((rates.reduce((s, v) => s + v, 0) / rates.length) * 10) / 10 : null,
  };
}

interface ResultFields {
  bestValAccuracy: number | null;
  testAccuracy: number | null;
  testAuc: number | null;
  testBalancedAccuracy: number | null;
  epochsToBest: number;
  epochs: number;
  imagesPerSecond: number | null;
  stoppedEarly: boolean | null;
}

function readResult(dir: string): ResultFields {
  const f = new Fields(dir, RUN_FILES.result);
  const o = f.obj(readJsonIn(dir, RUN_FILES.result), 'the file');
  const metrics = (key: 'bestVal' | 'test'): Obj | null => {
    const v = o[key];
    if (v === null || v === undefined) return null;
    return f.obj(v, key);
  };
  const bestVal = metrics('bestVal');
  const test = metrics('test');
  return {
    bestValAccuracy: bestVal ? f.metric(bestVal, 'accuracy', 'bestVal.accuracy') : null,
    testAccuracy: test ? f.metric(test, 'accuracy', 'test.accuracy') : null,
    testAuc: test ? f.metric(test, 'auc', 'test.auc') : null,
    testBalancedAccuracy: test ? f.metric(test, 'balancedAccuracy', 'test.balancedAccuracy') : null,
    epochsToBest: f.num(o, 'bestEpoch'),
    epochs: f.num(o, 'epochs'),
    imagesPerSecond: o.imagesPerSecond === undefined ? null : f.num(o, 'imagesPerSecond'),
    stoppedEarly: typeof o.stoppedEarly === 'boolean' ? o.stoppedEarly : null,
  };
}

function findGradcam(run: string): GradcamInfo | null {
  const dir = path.join(run, GRADCAM_DIR);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return null;
  const top = fs.readdirSync(dir, { withFileTypes: true });
  const html = top.find((e) => e.isFile() && e.name === RUN_FILES.gradcamHtml) ?? top.find((e) => e.isFile() && /\.html?$/i.test(e.name));
  // PNGs at the top and one folder down (e.g. gradcam/level_3/grid.png); grids first.
  const pngs: string[] = [];
  for (const e of top) {
    if (e.isFile() && /\.png$/i.test(e.name)) pngs.push(path.join(dir, e.name));
    else if (e.isDirectory()) {
      for (const s of fs.readdirSync(path.join(dir, e.name), { withFileTypes: true })) {
        if (s.isFile() && /grid.*\.png$/i.test(s.name)) pngs.push(path.join(dir, e.name, s.name));
      }
    }
  }
  pngs.sort();
  const grids = pngs.filter((p) => /grid/i.test(path.basename(p)));
  const csv = runFile(dir, 'summary');
  return { dir, html: html ? path.join(dir, html.name) : null, images: grids.length ? grids : pngs.slice(0, 4), summaryCsv: fs.existsSync(csv) ? csv : null };
}

/** Reads one run folder. Throws a one-line Error (MalformedRunError for bad files) naming the folder. */
export function collectRun(dir: string): CollectedRun {
  const config = readConfig(dir);
  const command = typeof config.command === 'string' ? config.command : 'imp';
  const scope = config.scope === 'global' || config.scope === 'layer' ? config.scope : null;
  const model = config.model as string;
  const dataSpec = config.data as string;
  const data = dataLabel(dataSpec);
  const name = path.basename(path.resolve(dir));
  const rows: LevelRow[] = [];
  for (const lf of findLevels(dir, command, scope)) {
    const sp = readSparsity(lf.dir);
    const { curve, imagesPerSecond: curveRate } = readCurve(lf.dir);
    const finished = fs.existsSync(runFile(lf.dir, 'result'));
    const res = finished ? readResult(lf.dir) : null;
    rows.push({
      run: dir,
      runName: name,
      model,
      data,
      scope,
      method: lf.method,
      level: lf.level,
      dir: lf.dir,
      finished,
      // Dense training of a `train` run writes no sparsity.json: nothing is pruned there.
      sparsity: sp ? sp.sparsity : lf.method === 'dense' && lf.level === 0 ? 0 : null,
      parametersLeft: sp?.parametersLeft ?? null,
      parameters: sp?.parameters ?? null,
      layers: sp?.layers ?? [],
      bestValAccuracy: res ? res.bestValAccuracy : null,
      testAccuracy: res ? res.testAccuracy : null,
      testAuc: res ? res.testAuc : null,
      testBalancedAccuracy: res ? res.testBalancedAccuracy : null,
      epochsToBest: res ? res.epochsToBest : null,
      epochs: res ? res.epochs : curve.length ? curve[curve.length - 1].epoch : null,
      imagesPerSecond: res ? (res.imagesPerSecond ?? curveRate) : curveRate,
      stoppedEarly: res ? res.stoppedEarly : null,
      curve,
    });
  }
  rows.sort((a, b) => methodRank(a.method) - methodRank(b.method) || a.method.localeCompare(b.method) || a.level - b.level);
  return {
    dir,
    name,
    config,
    command,
    model,
    data,
    dataSpec,
    scope,
    done: fs.existsSync(runFile(dir, 'done')),
    rows,
    gradcam: findGradcam(dir),
  };
}

/** Reads several run folders (in the order given); the same folder twice is an error. */
export function collectRuns(dirs: readonly string[]): CollectedRun[] {
  if (dirs.length === 0) throw new Error('no run folders given');
  const seen = new Set<string>();
  return dirs.map((d) => {
    const abs = path.resolve(d);
    if (seen.has(abs)) throw new Error(`${d}: given twice`);
    seen.add(abs);
    return collectRun(d);
  });
}

/** IMP and one-shot levels: the pruned methods (controls are neither, nor is dense). */
export function isPruned(method: string): boolean {
  return method.startsWith('imp-') || method.startsWith('oneshot-');
}

/** A control branch (random re-init, random pruning). */
export function isControl(method: string): boolean {
  return !isPruned(method) && method !== 'dense';
}

/** The run's dense point: level 0 of its IMP line (or a plain dense run). */
export function denseRow(run: CollectedRun): LevelRow | undefined {
  return run.rows.find((r) => r.level === 0 && (r.method === 'dense' || r.method.startsWith('imp-')));
}

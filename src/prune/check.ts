// `ticketlab check`: verifies the mask invariants of a run folder from its files alone (host only, no
// GPU, no model): the invariants themselves are invariants.ts, this module finds the files each one
// applies to and names the first offence.
//
// Two kinds of folder:
//   - a ticketlab run (config.json and/or level_<k>/ folders, see io/run-paths.ts);
//   - a folder of .safetensors saved from PyTorch's torch.nn.utils.prune (`<layer>.weight_orig` +
//     `<layer>.weight_mask`), one file per pruning level, in natural order of the file names.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileCache, asMask, verdicts, type CheckOptions, type InvariantId, type RunCheck, type Tensors, type Violation, INVARIANTS } from './check-core.js';
import { checkPytorchFolder } from './check-torch.js';
import { RUN_FILES, levelDir, listLevelFolders, oneshotDir, runFile, type LevelFolder } from '../io/run-paths.js';
import { parseRewind, rewindFile, type Rewind } from './imp.js';
import { sparsityAfter, type Scope } from './magnitude.js';
import {
  firstCountOffTarget,
  firstGrown,
  firstMaskDifference,
  firstNonBinary,
  firstNonZeroPruned,
  firstStartMismatch,
  keptCounts,
  masksIn,
  naturalOrder,
  targetAfterRound,
  targetForSparsity,
  targetLike,
  type KeptTarget,
  type Offence,
  type TensorsByKey,
} from './invariants.js';
import { structureChecker } from './structure.js';

export { INVARIANTS, type CheckOptions, type IgnoredFile, type InvariantId, type InvariantResult, type RunCheck, type Violation } from './check-core.js';

function readConfig(run: string): Record<string, unknown> | null {
  const f = runFile(run, 'config');
  if (!fs.existsSync(f)) return null;
  try {
    const o = JSON.parse(fs.readFileSync(f, 'utf8')) as unknown;
    if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error('not a JSON object');
    return o as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${f}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** What a level's kept counts must be, from the run's settings; null = nothing to compare against. */
interface Settings {
  scope: Scope | null;
  rate: number | null;
  sparsities: number[] | null;
  rewind: Rewind | null;
}

function settingsOf(cfg: Record<string, unknown> | null, run: string): Settings {
  const scope = cfg?.scope === 'global' || cfg?.scope === 'layer' ? cfg.scope : null;
  const rate = typeof cfg?.rate === 'number' ? cfg.rate : null;
  const sparsities = Array.isArray(cfg?.sparsities) && cfg.sparsities.every((s) => typeof s === 'number') ? (cfg.sparsities as number[]) : null;
  let rewind: Rewind | null = null;
  if (typeof cfg?.rewind === 'string') {
    try {
      rewind = parseRewind(cfg.rewind);
    } catch (e) {
      throw new Error(`${runFile(run, 'config')}: ${(e as Error).message}`);
    }
  }
  return { scope, rate, sparsities, rewind };
}

function levelLabel(l: CheckedLevel): string {
  if (l.family === 'transfer') return `transfer ${path.basename(l.dir)}`;
  return l.family === 'imp' ? `IMP level ${l.level}` : l.family === 'oneshot' ? `one-shot (${l.scope}) level ${l.level}` : `${l.kind} control at level ${l.level}`;
}

/** The files of a level whose pruned entries must be +0, with the state-dict keys they hold. */
const ZERO_FILES = ['final', 'best', 'checkpoint'] as const;
/** Optimizer state saved beside each weight in a checkpoint (trainer.ts: `optimizer.<key>.<slot>`). */
const OPTIMIZER_SLOTS = ['exp_avg', 'exp_avg_sq', 'momentum_buffer'] as const;

/**
 * A ticket transfer's level folders (prune/transfer.ts; `ticketlab transfer` writes them to
 * <run>/transfer-<data>/ by default): dense/ and <imp|oneshot>-<scope>_level_<k>/, each with its source.
 */
type TransferLevel = { family: 'transfer'; level: number; dir: string; source: string | null };
type CheckedLevel = LevelFolder | TransferLevel;

function transferLevels(run: string): TransferLevel[] {
  const out: TransferLevel[] = [];
  for (const e of fs.readdirSync(run, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isDirectory() || !e.name.startsWith('transfer-')) continue;
    const parent = path.join(run, e.name);
    for (const t of fs.readdirSync(parent, { withFileTypes: true }).sort((a, b) => naturalOrder(a.name, b.name))) {
      if (!t.isDirectory()) continue;
      const m = /^(imp|oneshot)-(global|layer)_level_(\d+)$/.exec(t.name);
      const dir = path.join(parent, t.name);
      if (t.name === 'dense') out.push({ family: 'transfer', level: 0, dir, source: null });
      else if (m) out.push({ family: 'transfer', level: Number(m[3]), dir, source: m[1] === 'imp' ? levelDir(run, Number(m[3])) : oneshotDir(run, m[2], Number(m[3])) });
    }
  }
  return out;
}

async function checkTicketlabRun(run: string, cache: FileCache): Promise<RunCheck> {
  const cfg = readConfig(run);
  const st = settingsOf(cfg, run);
  const structure = structureChecker(cfg, runFile(run, 'config'));
  const levels: CheckedLevel[] = [...listLevelFolders(run), ...transferLevels(run)];
  const v = verdicts();
  const masks = new Map<string, Tensors>();
  for (const l of levels) {
    const f = runFile(l.dir, 'mask');
    const t = await cache.tensors(f);
    if (!t) {
      // runLevel writes the mask before any weights: weights without one mean a lost or deleted mask,
      // and every other invariant of the level would be skipped without a word.
      const saved = (['start', ...ZERO_FILES] as const).filter((n) => fs.existsSync(runFile(l.dir, n)));
      if (saved.length) v.binary.record(cache.rel(f), { tensor: '(file)', index: -1, message: `is missing, but the level has saved weights (${saved.map((n) => RUN_FILES[n]).join(', ')})` });
      continue;
    }
    const m = masksIn(t);
    if (m.size === 0) v.binary.record(cache.rel(f), { tensor: '(file)', index: -1, message: 'holds no <layer>.weight_mask tensors' });
    masks.set(l.dir, m);
    v.binary.record(cache.rel(f), asMask(firstNonBinary(m)));
  }
  const imp = levels.filter((l) => l.family === 'imp');
  const impMask = (k: number) => masks.get(levelDir(run, k));

  for (const l of levels) {
    const m = masks.get(l.dir);
    if (!m) continue;
    const maskRel = cache.rel(runFile(l.dir, 'mask'));
    // Pruned stays pruned along the IMP chain.
    if (l.family === 'imp' && l.level > 0) {
      const prev = impMask(l.level - 1);
      if (prev) v.monotone.record(maskRel, asMask(firstGrown(prev, m)));
    }
    // sparsity.json tells the truth about the mask.
    const spFile = runFile(l.dir, 'sparsity');
    if (fs.existsSync(spFile)) v['sparsity-json'].record(cache.rel(spFile), sparsityJsonOffence(spFile, m));
    // The level's target count.
    const target = levelTarget(l, st, m, impMask);
    if (target) v.target.record(maskRel, firstCountOffTarget(m, await structure.target(runFile(l.dir, 'mask'), target)));
    v.structure.record(maskRel, await structure.offence(runFile(l.dir, 'mask'), m));
    // A transferred ticket keeps its source's mask.
    if (l.family === 'transfer' && l.source) {
      const source = masks.get(l.source);
      if (source) v.transfer.record(maskRel, asMask(firstMaskDifference(m, source)));
    }
    // Controls against their ticket.
    if (l.family === 'control') {
      const ticket = impMask(l.level);
      if (ticket && l.kind === 'random_prune') v['random-prune'].record(maskRel, firstCountOffTarget(m, targetLike(ticket, `IMP level ${l.level}`)));
      if (ticket && l.kind === 'reinit') v.reinit.record(maskRel, asMask(firstMaskDifference(m, ticket)));
    }
    // Exact zeros in every saved weight file (and optimizer state).
    for (const name of ZERO_FILES) {
      const f = runFile(l.dir, name);
      const t = await cache.tensors(f);
      if (!t) continue;
      let o = firstNonZeroPruned(m, t);
      for (const slot of OPTIMIZER_SLOTS) o ??= firstNonZeroPruned(m, t, (k) => `optimizer.${k}.${slot}`);
      for (const key of [(k: string) => k, ...OPTIMIZER_SLOTS.map((s) => (k: string) => `optimizer.${k}.${s}`)]) o ??= await structure.companion(l.dir, m, t, key);
      v.zeros.record(cache.rel(f), o);
    }
    // Start weights: the rewind point under the mask.
    const rewind = rewindPointOf(run, l, st);
    if (rewind) {
      const start = await cache.tensors(runFile(l.dir, 'start'));
      const point = await cache.tensors(rewind);
      if (start && point) v.rewind.record(cache.rel(runFile(l.dir, 'start')), firstStartMismatch(m, start, point));
      else if (start) v.rewind.record(cache.rel(runFile(l.dir, 'start')), { tensor: '(file)', index: -1, message: `its rewind point ${cache.rel(rewind)} is missing` });
    }
  }
  if (!imp.length && !levels.length) throw new Error(`${run}: no level_<k> folders and no .safetensors files: not a run folder`);
  v.structure.notes.push(`granularity ${structure.granularity}${structure.granularity === 'weight' ? ': any 0/1 mask' : ''}`);
  v.zeros.notes.push(`${ZERO_FILES.map((f) => RUN_FILES[f]).join(', ')}; start.safetensors is the unmasked rewind point by design`);
  const skip: Record<InvariantId, string> = {
    binary: 'no mask.safetensors found',
    structure: 'no mask.safetensors found',
    monotone: 'fewer than two IMP levels with masks',
    'sparsity-json': 'no sparsity.json found',
    target: cfg ? 'config.json names no rate, sparsities or scope' : 'no config.json (its rate and scope define the targets)',
    zeros: 'no final/best/checkpoint weights yet',
    rewind: cfg ? 'config.json names no rewind point' : 'no config.json (it names the rewind point)',
    'random-prune': 'no controls/random_prune levels with a matching IMP level',
    reinit: 'no controls/reinit levels with a matching IMP level',
    transfer: 'no transfer-<data>/<method>_level_<k> folders with a matching source level',
  };
  const results = INVARIANTS.map((i) => v[i.id].result(skip[i.id]));
  return { run, kind: 'ticketlab', levels: levels.map((l) => cache.rel(l.dir)), ignored: [], results, ok: results.every((r) => r.status !== 'fail') };
}

function levelTarget(l: CheckedLevel, st: Settings, m: TensorsByKey, impMask: (k: number) => TensorsByKey | undefined): KeptTarget | null {
  if (l.level === 0 && (l.family === 'imp' || l.family === 'transfer')) return targetForSparsity(m, 0, 'global');
  // Controls and transferred tickets are held to their ticket's mask or counts instead.
  if (l.family === 'control' || l.family === 'transfer') return null;
  const scope = l.family === 'oneshot' ? (l.scope as Scope) : st.scope;
  if (!scope) return null;
  const why = (t: KeptTarget): KeptTarget => ({ ...t, why: `${levelLabel(l)}: ${t.why}` });
  if (st.sparsities) {
    const s = st.sparsities[l.level - 1];
    return s === undefined ? null : why(targetForSparsity(m, s, scope));
  }
  if (st.rate === null) return null;
  if (l.family === 'oneshot') return why(targetForSparsity(m, sparsityAfter(l.level, st.rate), scope));
  const prev = impMask(l.level - 1);
  return prev ? why(targetAfterRound(prev, st.rate, scope)) : null;
}

/** The file a level's start weights must equal under its mask (imp.ts decides the same way). */
function rewindPointOf(run: string, l: CheckedLevel, st: Settings): string | null {
  if ((l.family === 'imp' || l.family === 'transfer') && l.level === 0) return runFile(levelDir(run, 0), 'init');
  if (!st.rewind) return null;
  if (l.family === 'transfer') return l.source && st.rewind.kind === 'none' ? runFile(l.source, 'final') : rewindFile(run, st.rewind, 0);
  if (l.family === 'imp') return rewindFile(run, st.rewind, l.level - 1);
  if (l.family === 'oneshot') return rewindFile(run, st.rewind, 0);
  if (l.kind === 'reinit') return runFile(l.dir, 'reinit');
  return rewindFile(run, st.rewind.kind === 'none' ? { kind: 'init' } : st.rewind, 0);
}

function sparsityJsonOffence(file: string, m: TensorsByKey): Offence | null {
  let o: { layers?: { key?: unknown; total?: unknown; kept?: unknown; pruned?: unknown }[]; total?: unknown; kept?: unknown; pruned?: unknown };
  try {
    o = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof o;
  } catch (e) {
    return { tensor: '(file)', index: -1, message: `is not JSON: ${(e as Error).message.split('\n')[0]}` };
  }
  const counts = keptCounts(m);
  const layers = Array.isArray(o.layers) ? o.layers : [];
  for (const [key, c] of counts) {
    const l = layers.find((x) => x.key === key);
    if (!l) return { tensor: key, index: -1, message: 'has no entry in sparsity.json' };
    if (l.total !== c.total) return { tensor: key, index: -1, message: `total ${String(l.total)} in sparsity.json, the mask has ${c.total}` };
    if (l.kept !== c.kept) return { tensor: key, index: -1, message: `kept ${String(l.kept)} in sparsity.json, the mask keeps ${c.kept}` };
    if (l.pruned !== undefined && l.pruned !== c.total - c.kept) return { tensor: key, index: -1, message: `pruned ${String(l.pruned)} in sparsity.json, the mask prunes ${c.total - c.kept}` };
  }
  const kept = [...counts.values()].reduce((s, c) => s + c.kept, 0);
  const total = [...counts.values()].reduce((s, c) => s + c.total, 0);
  if (o.kept !== kept) return { tensor: '(all layers)', index: -1, message: `kept ${String(o.kept)} in sparsity.json, the masks keep ${kept}` };
  if (o.total !== total) return { tensor: '(all layers)', index: -1, message: `total ${String(o.total)} in sparsity.json, the masks have ${total}` };
  const sp = (o as { sparsity?: unknown }).sparsity;
  if (typeof sp !== 'number' || Math.abs(sp - (total ? (total - kept) / total : 0)) > 1e-9) {
    return { tensor: '(all layers)', index: -1, message: `sparsity ${String(sp)} in sparsity.json, the masks prune ${total ? (total - kept) / total : 0}` };
  }
  return null;
}

/** Checks a run folder (ticketlab's or PyTorch's); never throws for a violated invariant, only for unreadable input. */
export async function checkRun(run: string, o: CheckOptions = {}): Promise<RunCheck> {
  if (!fs.existsSync(run)) throw new Error(`${run}: no such folder`);
  if (!fs.statSync(run).isDirectory()) throw new Error(`${run}: not a folder`);
  const cache = new FileCache(run);
  const isRun = fs.existsSync(runFile(run, 'config')) || listLevelFolders(run).length > 0;
  return isRun ? checkTicketlabRun(run, cache) : checkPytorchFolder(run, cache, o);
}

/** The first violation as one line: `level_1/mask.safetensors: conv1.weight_mask[17] holds 0.5; masks are 0/1`. */
export function formatViolation(v: Violation): string {
  return `${v.file}: ${v.tensor}${v.index >= 0 ? `[${v.index}]` : ''} ${v.message}`;
}

/** One line per invariant: PASS / FAIL / skip, the title, then the first offence or what was checked; then the ignored files. */
export function formatRunCheck(r: RunCheck): string {
  const w = Math.max(...r.results.map((x) => x.title.length));
  const what = r.kind === 'pytorch' ? `${r.levels.length} file(s) checked${r.ignored.length ? `, ${r.ignored.length} ignored` : ''}` : `${r.levels.length} level folders`;
  const head = `${r.run} (${r.kind === 'pytorch' ? 'PyTorch torch.nn.utils.prune files' : 'ticketlab run'}: ${what})`;
  const lines = r.results.map((x) => {
    const tag = x.status === 'pass' ? 'PASS' : x.status === 'fail' ? 'FAIL' : 'skip';
    const tail = x.violation ? formatViolation(x.violation) : x.status === 'pass' ? `${x.checked} checked${x.note ? ` (${x.note})` : ''}` : x.note;
    return `  ${tag}  ${x.title.padEnd(w)}  ${tail}`;
  });
  const ignored = r.ignored.map((i) => `  ignored  ${i.file}: ${i.reason}`);
  const failed = r.results.filter((x) => x.status === 'fail').length;
  const verdict = failed ? `${failed} invariant(s) violated` : r.levels.length ? 'all invariants hold' : 'nothing could be checked';
  return [head, ...lines, ...ignored, `  ${verdict}`].join('\n');
}

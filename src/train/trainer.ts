// The training loop of one model on one dataset: epochs of Adam (or SGD/AdamW) steps, validation after
// each epoch, early stopping on validation loss, and crash-safe state in a folder:
//
//   checkpoint.safetensors  weights + optimizer state + loop position, after every epoch and on Ctrl-C
//   best.safetensors        weights at the best validation loss so far
//   final.safetensors       the weights the run ends with (the best ones: early stopping restores them)
//   metrics.jsonl           one line per epoch, then one with the test metrics
//   result.json             written last; its presence means "finished" (re-running is a no-op)
//
// Resuming loads checkpoint.safetensors and continues at the saved epoch and batch: the shuffle order
// is a pure function of (seed, epoch), so the run continues exactly where it stopped.
//
// fit() sets a run up and ends it; the pieces live beside it: types.ts (settings, options, results,
// errors), epoch.ts (one epoch: steps, validation, checkpoint), checkpointing.ts (save/load/validate
// the loop state, result.json, the epoch log on resume), evaluate.ts (metrics of a model on a dataset).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Detector } from '../nn/models/index.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer } from '../nn/optim/optimizer.js';
import { parseSchedule } from '../nn/optim/schedule.js';
import { DataLoader } from '../data/loader.js';
import { readSafetensorsHeader, saveSafetensors } from '../io/safetensors.js';
import { readJson, writeJsonAtomic } from '../io/atomic.js';
import { appendJsonl } from '../io/jsonl.js';
import { loadModel, toHostTensors } from '../nn/checkpoint.js';
import { runFile } from '../io/run-paths.js';
import { roundMetrics } from './metrics.js';
import { Conv2d, Dropout, Linear } from '../nn/layers.js';
import { clearPins, pinKernels, resetPlannerRecord } from '../tensor/plan.js';
import { loadCheckpoint, readFitResult, resumeHistory, saveKernels, validMetricsOrNull, type LoopState, type PartialEpoch } from './checkpointing.js';
import { evaluate } from './evaluate.js';
import { runEpoch } from './epoch.js';
import { optimizerConfig, type FitOptions, type FitResult } from './types.js';
import { ArgumentError } from '../util/errors.js';

// The loop's public names, from where importers have always found them.
export * from './types.js';
export { evaluate, NonFiniteError } from './evaluate.js';
export { parseLoopState, type LoopLimits } from './checkpointing.js';

function dropouts(model: Detector): Dropout[] {
  return [...model.namedModules()].map(([, m]) => m).filter((m): m is Dropout => m instanceof Dropout);
}

/** The masks the model's layers carry, by weight key: fit keeps those weights at 0 without being told. */
function layerMasks(model: Detector): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, m] of model.namedModules()) if ((m instanceof Conv2d || m instanceof Linear) && m.mask) out.set(name ? `${name}.weight` : 'weight', m.mask);
  return out;
}

/** The settings a run was trained with, as result.json records them (key order fixed). */
function settingsKey(s: FitOptions['settings']): string {
  return JSON.stringify(Object.fromEntries(Object.entries(s).sort(([a], [b]) => (a < b ? -1 : 1))));
}

/** What differs between two settings records, for the refusal: `epochs 1 there, 3 here`. */
function settingsDiff(there: string, here: string): string {
  const a = JSON.parse(there) as Record<string, unknown>;
  const b = JSON.parse(here) as Record<string, unknown>;
  return [...new Set([...Object.keys(a), ...Object.keys(b)])]
    .filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => `${k} ${JSON.stringify(a[k])} there, ${JSON.stringify(b[k])} here`)
    .join('; ');
}

/**
 * Trains `model` in place; see the file comment for what lands in `dir`. Without `dir`, trains in a
 * temporary folder that is removed afterwards (FitOptions.dir).
 */
export async function fit(o: FitOptions): Promise<FitResult> {
  if (o.dir !== undefined) return fitIn(o.dir, o);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-fit-'));
  try {
    return await fitIn(dir, o);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function fitIn(dir: string, o: FitOptions): Promise<FitResult> {
  const s = o.settings;
  const log = o.log ?? ((m: string) => process.stderr.write(m + '\n'));
  const resultFile = runFile(dir, 'result');
  const ckptFile = runFile(dir, 'checkpoint');
  const bestFile = runFile(dir, 'best');
  const finalFile = runFile(dir, 'final');
  const metricsFile = runFile(dir, 'metrics');
  // A file where the level folder should be: mkdir's own EEXIST does not say what is wrong.
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new Error(`${dir} is a file, not a folder; the run folder is damaged`);
  fs.mkdirSync(dir, { recursive: true });
  // Every file the level reads or writes must be a file: one replaced by a folder would otherwise fail
  // only after an epoch of training had already rewritten the checkpoint.
  for (const f of [ckptFile, bestFile, finalFile, metricsFile, resultFile]) {
    if (fs.existsSync(f) && !fs.statSync(f).isFile()) throw new Error(`${f} is not a regular file (a folder?); the run folder is damaged`);
  }
  if (fs.existsSync(resultFile)) {
    // Finished before: the same settings return its result (a resumed sweep or IMP level); others
    // would silently hand back a model trained differently. Runs from before settings were recorded
    // cannot be compared and are returned as they are.
    const raw = await readJson<unknown>(resultFile);
    const recorded = raw !== null && typeof raw === 'object' && 'settings' in raw ? (raw as { settings: Record<string, unknown> }).settings : undefined;
    const there = recorded === undefined ? undefined : settingsKey(recorded as unknown as FitOptions['settings']);
    if (there !== undefined && there !== settingsKey(s)) {
      throw new ArgumentError('fit', 'dir', `${dir} holds a finished run with other settings (${settingsDiff(there, settingsKey(s))}); choose another folder or remove it`);
    }
    // Load its final weights so callers continue from the same model.
    const res = readFitResult(raw, resultFile);
    await loadModel(finalFile, o.model);
    return res;
  }
  if (o.train.length() === 0) throw new Error(`${o.train.name}: the training split is empty`);
  if (o.val.length() === 0) throw new Error(`${o.val.name}: the validation split is empty (early stopping and best weights need it)`);
  if (!Number.isInteger(s.epochs) || s.epochs < 1) throw new ArgumentError('fit', 'settings.epochs', `${s.epochs} must be a positive integer`);
  if (!Number.isInteger(s.batch) || s.batch < 1) throw new ArgumentError('fit', 'settings.batch', `${s.batch} must be a positive integer`);

  const named = [...o.model.namedParameters()];
  const opt = new Optimizer(
    named.map(([, t]) => t),
    optimizerConfig(s),
    named.map(([k]) => k),
  );
  const carried = layerMasks(o.model);
  for (const [k, t] of named) {
    const m = o.masks?.get(k) ?? carried.get(k);
    if (m) opt.setMask(t, m);
  }
  const loader = new DataLoader(o.train, { batchSize: s.batch, shuffle: true, seed: s.seed, flip: s.flip });
  const stepsPerEpoch = loader.numBatches();
  const schedule = { schedule: parseSchedule(s.schedule, stepsPerEpoch * s.epochs), warmupSteps: s.warmupSteps };
  const drops = dropouts(o.model);

  const kernelsFile = runFile(dir, 'kernels');
  clearPins();
  resetPlannerRecord();
  const pinned = fs.existsSync(kernelsFile) ? await readJson<Record<string, string>>(kernelsFile) : {};
  pinKernels(pinned);

  let st: LoopState = { epoch: 0, batch: 0, step: 0, bestValLoss: Infinity, bestEpoch: -1, badEpochs: 0, dropoutDrawn: [], seconds: 0, images: 0 };
  let partial: PartialEpoch | null = null;
  if (fs.existsSync(ckptFile)) {
    if (!o.resume) throw new ArgumentError('fit', 'dir', `${dir} holds an unfinished run; pass resume: true to continue it, or choose another dir`);
    ({ partial, ...st } = await loadCheckpoint(ckptFile, o.model, opt, { epochs: s.epochs, stepsPerEpoch, dropouts: drops.length, nTrain: o.train.length() }));
    // The best weights so far are read only when the level ends: check them now, before anything is
    // written, so a damaged file fails the resume at once instead of after the remaining epochs.
    if (fs.existsSync(bestFile)) await readSafetensorsHeader(bestFile);
    else if (st.bestEpoch >= 0) throw new Error(`${bestFile} is missing, but the checkpoint says epoch ${st.bestEpoch + 1} was the best; the run folder is damaged`);
    drops.forEach((d, i) => (d.drawn = st.dropoutDrawn[i] ?? 0));
    log(`resuming ${dir} at epoch ${st.epoch + 1}, batch ${st.batch}`);
  }
  const capture = async (kind: 'step' | 'epoch', at: number) => {
    for (const c of o.captures ?? []) if ((c.at === 0 ? at === 0 : c.kind === kind && c.at === at)) await c.capture(o.model);
  };
  // First, before anything else is written: theta_0 is written once, and a different one on disk (a
  // damaged or foreign folder) is refused here with the folder untouched.
  if (st.step === 0 && st.epoch === 0 && st.batch === 0) await capture('step', 0);
  const history = await resumeHistory(metricsFile, ckptFile, st.epoch, log);

  let stoppedEarly = false;
  const run = {
    model: o.model,
    opt,
    loader,
    settings: s,
    schedule,
    train: o.train,
    val: o.val,
    drops,
    dir,
    files: { checkpoint: ckptFile, best: bestFile, metrics: metricsFile },
    history,
    capture,
    saveKernels: () => saveKernels(kernelsFile, pinned),
    progress: o.progress,
    signal: o.signal,
    log,
    beforeEval: o.beforeEval,
    hasCheckpoint: () => fs.existsSync(ckptFile),
  };
  try {
    while (st.epoch < s.epochs && !stoppedEarly) {
      stoppedEarly = await runEpoch(run, st, partial);
      partial = null;
    }
  } finally {
    opt.dispose();
    clearPins();
  }
  // Early stopping restores the best weights (Keras restore_best_weights semantics, as the study).
  if (fs.existsSync(bestFile)) await loadModel(bestFile, o.model);
  await saveSafetensors(finalFile, await toHostTensors(o.model.stateDict()), {
    ticketlab: 'weights',
    epoch: String(st.bestEpoch + 1),
  });
  const test = o.test ? await evaluate(o.model, o.test, s.batch, 'test', o.progress) : null;
  const bestRec = history.find((r) => r.epoch === st.bestEpoch);
  const result: FitResult = {
    epochs: st.epoch,
    steps: st.step,
    bestEpoch: st.bestEpoch + 1,
    bestVal: bestRec ? validMetricsOrNull(bestRec.val) : null,
    test: test ? roundMetrics(test) : null,
    stoppedEarly,
    seconds: Math.round(st.seconds * 1000) / 1000,
    imagesPerSecond: st.seconds > 0 ? Math.round((st.images / st.seconds) * 10) / 10 : 0,
  };
  if (test) await appendJsonl(metricsFile, { final: true, bestEpoch: result.bestEpoch, test: result.test });
  // The settings ride along (readFitResult ignores them) so that a later fit on this folder can tell.
  await writeJsonAtomic(resultFile, { ...result, settings: JSON.parse(settingsKey(s)) as unknown });
  fs.rmSync(ckptFile, { force: true });
  return result;
}

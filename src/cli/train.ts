// `ticketlab train` and `ticketlab eval`.
import * as path from 'node:path';
import * as fs from 'node:fs';
import { closeDevice, initDevice, deviceName } from '../tensor/device.js';
import { createModel, parseModelName } from '../nn/models/index.js';
import { loadModel, saveModelOnce } from '../nn/checkpoint.js';
import { openDataset } from '../data/datasets.js';
import { evaluate, fit } from '../train/trainer.js';
import { checkRunDir, levelDir, markDone, startRun } from '../train/run.js';
import { runFile } from '../io/run-paths.js';
import { readJsonSync } from '../io/atomic.js';
import { checkModelFits, openTrainingData } from './prepare.js';
import { parseFlags, type Command } from './args.js';
import { KERNEL_FLAG, KERNEL_FLAG_HELP, CACHE_FLAGS, CACHE_FLAGS_HELP, applyCacheFlags, TRAIN_FLAGS, TRAIN_FLAGS_HELP, kernelFlag, wantsTune, dataOptions, defaultOut, parseRunSpec, num } from './flags.js';
import { withRun } from './signals.js';
import { formatMetrics } from './format.js';
import { attachMasks, loadMasksOf } from '../prune/masks.js';
import { levelKernels } from '../nn/sparse.js';
import { prepareKernels } from './tune.js';

const log = (m: string) => process.stderr.write(m + '\n');

/** Everything `train` checks before it touches the run folder (flags, --out, dataset); writes nothing. */
export async function prepareTrain(args: string[]) {
  const { values } = parseFlags(args, TRAIN_FLAGS, 'train');
  kernelFlag(values); // a dense model has no pruned layers; the flag is still checked
  applyCacheFlags(values);
  wantsTune(values); // --tune with --no-tune fails here, before any folder exists
  const spec = parseRunSpec(values);
  const out = values.out ?? defaultOut(spec);
  checkRunDir(out);
  const data = await openTrainingData(spec);
  return { values, spec, out, data };
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'train a detector (dense) and evaluate it on the test split',
  help: `ticketlab train [flags]

Trains a deepfake detector with BCE-with-logits on one logit (fake), validating after every epoch,
stopping early on validation loss and keeping the best weights. The run folder gets:
  config.json                      every resolved setting
  level_0/init.safetensors         the initial weights (theta_0; IMP rewinds to them)
  level_0/final.safetensors        the trained weights (PyTorch state-dict keys)
  level_0/metrics.jsonl            per epoch: loss, accuracy, balanced accuracy, ROC AUC (train, val); test at the end
  level_0/result.json              summary; its presence marks the run finished
Ctrl-C finishes the current step and saves; --resume continues from there.

${TRAIN_FLAGS_HELP}`,
  async run(args) {
    // Everything is checked before the run folder is created or locked: a failed start leaves nothing.
    const { values, spec, out, data } = await prepareTrain(args);
    const dev = await initDevice();
    log(`device: ${deviceName(dev.info)}`);
    await checkModelFits(spec);
    await startRun(out, { command: 'train', ...spec }, { resume: !!values.resume, purpose: 'ticketlab train' });
    log(`data: ${data.name}: train ${data.train.length()}, val ${data.val.length()}, test ${data.test.length()} at ${spec.size}x${spec.size}`);
    await prepareKernels(spec.model, spec.size, spec.train.batch, wantsTune(values), log);
    const model = createModel(spec.model, { size: spec.size, seed: spec.train.seed });
    log(`model: ${spec.model}, ${model.parameterCount().toLocaleString('en-US')} parameters`);
    const dir = levelDir(out, 0);
    return withRun(async (signal) => {
      try {
        const res = await fit({
          model,
          train: data.train,
          val: data.val,
          test: data.test,
          settings: spec.train,
          dir,
          resume: !!values.resume,
          progress: !values.quiet,
          signal,
          captures: [{ kind: 'step', at: 0, capture: (m) => saveModelOnce(runFile(dir, 'init'), m, { ticketlab: 'theta_0' }) }],
          log,
        });
        await markDone(out, { result: res });
        process.stdout.write(
          `best epoch ${res.bestEpoch} of ${res.epochs}${res.stoppedEarly ? ' (early stop)' : ''}; ` +
            `${res.imagesPerSecond} img/s training\n` +
            (res.bestVal ? `val:  ${formatMetrics(res.bestVal)}\n` : '') +
            (res.test ? `test: ${formatMetrics(res.test)}\n` : '') +
            `results in ${out}/\n`,
        );
        return 0;
      } finally {
        model.dispose();
      }
    }, log);
  },
};

export const evalCommand: Command = {
  name: 'eval',
  summary: 'evaluate saved weights on a dataset split',
  help: `ticketlab eval --weights FILE [--model NAME] [--data SPEC] [--size PX] [--split test|val|train] [--batch N]

Loads a .safetensors state dict (ours, or exported from PyTorch with the same keys) into the model and
prints loss, accuracy, balanced accuracy and ROC AUC. --weights may also be a run folder or level
folder (its final.safetensors is used; --model/--size default to the run's config).
  --json              print the metrics as JSON
With --kernels sparse|auto and a mask.safetensors beside the weights (a level folder), the mask is
attached and the pruned layers run the chosen kernels (printed on stderr).
${KERNEL_FLAG_HELP}${CACHE_FLAGS_HELP}`,
  async run(args) {
    const { values } = parseFlags(
      args,
      {
        weights: { type: 'string' },
        model: { type: 'string' },
        data: { type: 'string', default: 'synthetic' },
        size: { type: 'string' },
        split: { type: 'string', default: 'test' },
        batch: { type: 'string', default: '64' },
        seed: { type: 'string', default: '0' },
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
        ...KERNEL_FLAG,
        ...CACHE_FLAGS,
      },
      'eval',
    );
    const kernels = kernelFlag(values);
    applyCacheFlags(values);
    if (!values.weights) throw new Error('eval: --weights FILE is required');
    let weights = values.weights;
    let model = values.model;
    let size = values.size ? num(values, 'size', { int: true, min: 8 }) : undefined;
    // A run or level folder: take its config and final weights.
    if (fs.existsSync(weights) && fs.statSync(weights).isDirectory()) {
      const runDir = fs.existsSync(runFile(weights, 'config')) ? weights : path.dirname(weights);
      const cfgFile = runFile(runDir, 'config');
      if (!fs.existsSync(cfgFile)) throw new Error(`--weights ${values.weights}: a folder, but not a run or level folder (no ${cfgFile})`);
      const cfg = readJsonSync<{ model?: unknown; size?: unknown } | null>(cfgFile);
      if (cfg === null || typeof cfg !== 'object') throw new Error(`${cfgFile}: not a run config (expected a JSON object)`);
      if (typeof cfg.model === 'string') model ??= cfg.model;
      if (typeof cfg.size === 'number') size ??= cfg.size;
      weights = fs.existsSync(runFile(weights, 'final')) ? runFile(weights, 'final') : runFile(levelDir(runDir, 0), 'final');
    }
    if (!fs.existsSync(weights)) throw new Error(`--weights ${weights}: no such file`);
    model ??= 'meso4';
    size ??= values.data.startsWith('synthetic') ? 64 : model === 'resnet18' ? 224 : 256;
    const split = values.split;
    if (split !== 'test' && split !== 'val' && split !== 'train') throw new Error(`--split '${split}' is not one of test, val, train`);
    const seed = num(values, 'seed', { int: true, min: 0 });
    const batch = num(values, 'batch', { int: true, min: 1 });
    await initDevice();
    try {
      const data = await openDataset(values.data, { size, seed }).catch((e: Error) => {
        throw new Error(`--data ${values.data}: ${e.message.split('\n')[0]}`);
      });
      if (data[split].length() === 0) throw new Error(`--data ${values.data}: the ${split} split has no images`);
      const m = createModel(parseModelName(model), { size });
      await loadModel(weights, m);
      const maskFile = runFile(path.dirname(weights), 'mask');
      if (kernels !== 'dense' && fs.existsSync(maskFile)) {
        const { ws, masks } = await loadMasksOf(maskFile, m);
        attachMasks(ws, masks, kernels);
        await levelKernels(m, { mode: kernels, input: [batch, 3, size, size], label: 'eval', log });
      }
      const res = await evaluate(m, data[split], batch, `${weights} on ${split}`, !values.quiet);
      process.stdout.write(values.json ? JSON.stringify(res, null, 2) + '\n' : `${split}: ${formatMetrics(res)}\n`);
      m.dispose();
      return 0;
    } finally {
      closeDevice();
    }
  },
};

// Flags shared by the commands that train: parsing, validation (one-line errors naming the flag) and
// the help text, in one place so `train`, `imp`, `oneshot` and `transfer` agree.
import type { ParseArgsConfig } from 'node:util';
import { DEFAULT_TRAIN, type TrainSettings } from '../train/trainer.js';
import { MODEL_NAMES, defaultInputSize, isModelName, type ModelName } from '../nn/models/index.js';
import { parseSchedule, type ScheduleSpec } from '../nn/optim/schedule.js';
import type { OpenOptions } from '../data/datasets.js';
import { parseKernelMode, type KernelMode } from '../tensor/sparse-plan.js';
import { setCacheDefaults } from '../data/decoded.js';
import { parseMemoryBudget, setShardMemoryBudget } from '../data/shard-memory.js';
import * as path from 'node:path';

/** `--kernels`: which kernels pruned layers run (nn/sparse.ts); on every command that runs a model. */
export const KERNEL_FLAG = { kernels: { type: 'string', default: 'dense' } } as const satisfies NonNullable<ParseArgsConfig['options']>;

export const KERNEL_FLAG_HELP = `  --kernels K         kernels of pruned conv/linear layers: dense (weight * mask, then the dense
                      kernel; default) | sparse (kernels that skip pruned weights: compressed rows
                      below 30% density, blocked above) | auto (per layer and phase the fastest of
                      dense / compressed rows / blocked, timed on the layer's shapes and density at
                      the start of each level; the choice is logged and kept in <level>/kernels.json).
                      Results agree within float32 rounding; a dense model (no masks) always runs dense
`;

/** `--cache DIR` / `--no-cache`: where the dataset's caches live, and whether decoded shards are used. */
export const CACHE_FLAGS = { cache: { type: 'string' }, 'no-cache': { type: 'boolean', default: false }, 'cache-mem': { type: 'string' } } as const satisfies NonNullable<ParseArgsConfig['options']>;

export const CACHE_FLAGS_HELP = `  --cache DIR         the dataset's cache folder (decoded shards at the training size, face crops,
                      video frames; default <dataset>/.ticketlab-cache). Results do not depend on it
  --no-cache          decode and resize every image on every read instead of reading decoded shards
  --cache-mem M       how much memory may hold whole shard files, so later epochs copy images from
                      memory instead of reading the disk: bytes with a unit (512M, 2G), a share of RAM
                      (25%), or 0 for none (default: TICKETLAB_CACHE_MEM, else a quarter of RAM or half
                      of what is free, whichever is less)
`;

/** Sets the process's data-cache defaults from --cache / --no-cache (data/decoded.ts). */
export function applyCacheFlags(values: { cache?: string; 'no-cache'?: boolean; 'cache-mem'?: string }): void {
  if (values.cache !== undefined && values['no-cache']) throw new Error('--cache and --no-cache contradict each other; give one');
  if (values['cache-mem'] !== undefined) {
    if (values['no-cache']) throw new Error('--cache-mem sizes the decoded shards held in memory, which --no-cache turns off; give one');
    setShardMemoryBudget(parseMemoryBudget(values['cache-mem'], '--cache-mem'));
  }
  if (values.cache !== undefined && values.cache.trim() === '') throw new Error('--cache needs a folder');
  setCacheDefaults({ dir: values.cache === undefined ? undefined : path.resolve(values.cache), decoded: !values['no-cache'] });
}

/** The kernel mode of --kernels (one-line error naming the flag); commands pass it down to the levels. */
export function kernelFlag(values: { kernels?: string }): KernelMode {
  return parseKernelMode(String(values.kernels ?? 'dense'));
}

export const TRAIN_FLAGS = {
  model: { type: 'string', default: 'meso4' },
  data: { type: 'string', default: 'synthetic' },
  size: { type: 'string' },
  crop: { type: 'string', default: 'face' },
  batch: { type: 'string', default: String(DEFAULT_TRAIN.batch) },
  epochs: { type: 'string', default: String(DEFAULT_TRAIN.epochs) },
  lr: { type: 'string', default: String(DEFAULT_TRAIN.lr) },
  optimizer: { type: 'string', default: DEFAULT_TRAIN.optimizer },
  momentum: { type: 'string', default: String(DEFAULT_TRAIN.momentum) },
  'weight-decay': { type: 'string', default: String(DEFAULT_TRAIN.weightDecay) },
  schedule: { type: 'string', default: DEFAULT_TRAIN.schedule },
  warmup: { type: 'string', default: '0' },
  patience: { type: 'string', default: String(DEFAULT_TRAIN.patience) },
  seed: { type: 'string', default: '0' },
  'no-flip': { type: 'boolean', default: false },
  out: { type: 'string' },
  resume: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
  ...KERNEL_FLAG,
  ...CACHE_FLAGS,
  tune: { type: 'boolean', default: false },
  'no-tune': { type: 'boolean', default: false },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export const TRAIN_FLAGS_HELP = `Model and data:
  --model NAME        meso4 | mesoinception4 | cnn5 | resnet18            (default meso4)
  --data SPEC         synthetic[:difficulty=0.5,train=N,val=N,test=N,seed=S], or a dataset root:
                      an image folder ({Train,Validation,Test}/{Real,Fake}/, Kaggle layouts),
                      an OpenForensics release (*_poly.json + Images/), or a FaceForensics++ release
                      (original_sequences/ + manipulated_sequences/); the layout is detected (default synthetic)
  --size PX           square input size (default: 256 for meso*, 64 for synthetic data, 224 for resnet18)
  --crop MODE         face (default): crops from the SSD-MobileNet face detector, a 1.3x square around the
                      face. FaceForensics++: the largest face of each frame (a frame without one is
                      centre-cropped). OpenForensics releases: the detection on the whole photo that
                      overlaps each annotated face at IoU >= 0.5 (an annotation none matches is cropped
                      to its box; the count is reported). box: OpenForensics only, the annotated box
                      x1.3 (the crops of earlier versions). centre: FF++ only, the centre square.
                      Crops are cached per mode; image folders and synthetic data ignore --crop
Training (defaults follow the study: Adam, lr 1e-4, early stopping with patience 10):
  --batch N           batch size (default ${DEFAULT_TRAIN.batch})
  --epochs N          maximum epochs (default ${DEFAULT_TRAIN.epochs})
  --lr X              learning rate (default ${DEFAULT_TRAIN.lr})
  --optimizer NAME    adam | adamw | sgd (default adam)
  --momentum X        SGD momentum (default ${DEFAULT_TRAIN.momentum})
  --weight-decay X    L2 (adam, sgd) or decoupled (adamw) weight decay (default 0)
  --schedule S        constant | cosine | step:<steps>:<gamma> (default constant)
  --warmup N          linear learning-rate warm-up steps (default 0)
  --patience N        early-stopping patience in epochs on validation loss; 0 = off (default ${DEFAULT_TRAIN.patience})
  --seed N            seeds weights, data order, augmentation, dropout and masks (default 0)
  --no-flip           no horizontal-flip augmentation
Output:
  --out DIR           run folder (default runs/<model>-<data>-s<seed>); one process writes it at a time
                      (a second one, or --resume of a run still going, is refused naming the holder)
  --resume            continue an interrupted run in --out (at the epoch and batch where it stopped)
  --quiet             no progress bars
Data cache:
${CACHE_FLAGS_HELP}Kernels:
  --tune              use this adapter's tuned kernels, timing the shapes the cache lacks first (bounded,
                      see 'ticketlab tune'); env TICKETLAB_TUNE=1. Default: the static rules. Each level
                      records its kernels in level_<k>/kernels.json and --resume uses the same ones
  --no-tune           the static rules even when TICKETLAB_TUNE=1 is set
${KERNEL_FLAG_HELP}`;

type Values = { [K in keyof typeof TRAIN_FLAGS]?: (typeof TRAIN_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

export function num(values: Record<string, unknown>, flag: string, opts: { int?: boolean; min?: number; max?: number } = {}): number {
  const raw = values[flag];
  const v = Number(raw);
  const bad =
    typeof raw !== 'string' ||
    raw.trim() === '' ||
    !Number.isFinite(v) ||
    (opts.int && !Number.isInteger(v)) ||
    (opts.min !== undefined && v < opts.min) ||
    (opts.max !== undefined && v > opts.max);
  if (bad) {
    const kind = opts.int ? 'an integer' : 'a number';
    const what =
      opts.min !== undefined && opts.max !== undefined
        ? `${kind} in [${opts.min}, ${opts.max}]`
        : `${kind}${opts.min !== undefined ? ` >= ${opts.min}` : ''}${opts.max !== undefined ? ` <= ${opts.max}` : ''}`;
    throw new Error(`--${flag} '${String(raw)}' must be ${what}`);
  }
  return v;
}

export interface RunSpec {
  model: ModelName;
  data: string;
  size: number;
  /** Present only when not the default (face), so configs of earlier runs still match. */
  crop?: 'centre' | 'box';
  train: TrainSettings;
}

/** openDataset options of a run: size, seed and the crop mode (FF++ and OpenForensics). */
export function dataOptions(spec: Pick<RunSpec, 'size' | 'crop'> & { train: { seed: number } }): OpenOptions {
  return { size: spec.size, seed: spec.train.seed, crop: spec.crop ?? 'face' };
}


export function parseRunSpec(values: Values): RunSpec {
  const model = String(values.model);
  if (!isModelName(model)) throw new Error(`--model '${model}' is not one of ${MODEL_NAMES.join(', ')}`);
  const optimizer = String(values.optimizer);
  if (!['adam', 'adamw', 'sgd'].includes(optimizer)) throw new Error(`--optimizer '${optimizer}' is not one of adam, adamw, sgd`);
  const data = String(values.data);
  const v = values as Record<string, unknown>;
  const size = values.size === undefined ? defaultInputSize(model, data) : num(v, 'size', { int: true, min: 8, max: 4096 });
  parseSchedule(String(values.schedule), 1);
  const crop = String(values.crop ?? 'face');
  if (crop !== 'face' && crop !== 'centre' && crop !== 'box') throw new Error(`--crop '${crop}' is not one of face, box, centre`);
  return {
    model,
    data,
    size,
    ...(crop !== 'face' ? { crop } : {}),
    train: {
      epochs: num(v, 'epochs', { int: true, min: 1 }),
      batch: num(v, 'batch', { int: true, min: 1 }),
      lr: num(v, 'lr', { min: 1e-12 }),
      optimizer: optimizer as TrainSettings['optimizer'],
      momentum: num(v, 'momentum', { min: 0, max: 1 }),
      weightDecay: num(v, 'weight-decay', { min: 0 }),
      // parseSchedule above refused anything that is not a ScheduleSpec.
      schedule: String(values.schedule) as ScheduleSpec,
      warmupSteps: num(v, 'warmup', { int: true, min: 0 }),
      patience: num(v, 'patience', { int: true, min: 0 }),
      seed: num(v, 'seed', { int: true, min: 0 }),
      flip: !values['no-flip'],
    },
  };
}

export function defaultOut(spec: RunSpec, kind = ''): string {
  const data = spec.data.startsWith('synthetic') ? 'synthetic' : spec.data.replace(/[\\/]+$/, '').split(/[\\/]/).pop() || 'data';
  return `runs/${spec.model}-${data}${kind ? `-${kind}` : ''}-s${spec.train.seed}`;
}

/**
 * Whether a command uses this adapter's tuned kernels: --tune or TICKETLAB_TUNE=1, unless --no-tune
 * (which wins over the environment, so a sweep script can pin the static rules).
 */
export function wantsTune(values: { tune?: boolean; 'no-tune'?: boolean }): boolean {
  if (values.tune && values['no-tune']) throw new Error('--tune and --no-tune contradict each other; give one');
  if (values['no-tune']) return false;
  return !!values.tune || process.env.TICKETLAB_TUNE === '1';
}

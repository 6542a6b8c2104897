// The training loop's vocabulary: its settings, what it records per epoch and returns, the options of
// fit(), and the two ways a run ends early (an interrupt, a divergence). Shared by the loop's modules
// (trainer.ts, epoch.ts, checkpointing.ts) and by every caller of fit().
import type { Detector } from '../nn/models/index.js';
import type { OptimizerConfig, OptimizerName } from '../nn/optim/optimizer.js';
import type { ScheduleSpec } from '../nn/optim/schedule.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Dataset } from '../data/datasets.js';
import type { BinaryMetrics } from './metrics.js';
import { ArgumentError } from '../util/errors.js';

export interface TrainSettings {
  epochs: number;
  batch: number;
  lr: number;
  optimizer: OptimizerName;
  momentum: number;
  weightDecay: number;
  schedule: ScheduleSpec;
  warmupSteps: number;
  /** Early stopping: epochs without a better validation loss before stopping (0 = never stop early). */
  patience: number;
  seed: number;
  /** Horizontal-flip augmentation of training images. */
  flip: boolean;
}

export const DEFAULT_TRAIN: TrainSettings = {
  epochs: 10,
  batch: 32,
  lr: 1e-4,
  optimizer: 'adam',
  momentum: 0.9,
  weightDecay: 0,
  schedule: 'constant',
  warmupSteps: 0,
  patience: 10,
  seed: 0,
  flip: true,
};

export interface EpochRecord {
  epoch: number;
  step: number;
  lr: number;
  seconds: number;
  imagesPerSecond: number;
  train: BinaryMetrics;
  val: BinaryMetrics;
  best: boolean;
}

export interface FitResult {
  epochs: number;
  steps: number;
  bestEpoch: number;
  bestVal: BinaryMetrics | null;
  test: BinaryMetrics | null;
  stoppedEarly: boolean;
  seconds: number;
  imagesPerSecond: number;
}

/** Snapshot of the weights at a point in training (theta_0, and theta_k for late rewinding). */
export interface RewindPoint {
  kind: 'step' | 'epoch';
  /** Capture after this many steps/epochs (0 = before the first step). */
  at: number;
  capture: (model: Detector) => Promise<void>;
}

export interface FitOptions {
  model: Detector;
  train: Dataset;
  val: Dataset;
  test?: Dataset;
  settings: TrainSettings;
  /**
   * The run folder (see trainer.ts). Omitted: a quick in-memory experiment; the loop then keeps its
   * files in a private temporary folder that is removed when fit returns or throws (nothing can resume).
   */
  dir?: string;
  /** Resume from dir/checkpoint.safetensors if present (otherwise a present checkpoint is an error). */
  resume?: boolean;
  /**
   * 0/1 masks by parameter key: the optimizer keeps masked weights and their state at exactly zero.
   * Masks the model's layers carry (prune() or attachMasks) are used without being passed here.
   */
  masks?: ReadonlyMap<string, Tensor>;
  /** Weight snapshots to take during training; each runs when its step/epoch is reached. */
  captures?: readonly RewindPoint[];
  /** Show a progress bar on stderr. */
  progress?: boolean;
  /** Set .stop = true (e.g. on SIGINT) to finish the current step, save and return. */
  signal?: { stop: boolean };
  log?: (msg: string) => void;
  /** Runs before each validation, ahead of the epoch's weight readback (--bn-reestimate: bn-reestimate.ts). */
  beforeEval?: () => Promise<void>;
}

export class Interrupted extends Error {
  constructor(readonly dir: string) {
    super(`interrupted; state saved in ${dir} (resume with --resume)`);
  }
}

/**
 * Training produced a NaN/Inf loss or weight. The run stops without writing a checkpoint, best or final
 * weights from the diverged model, so the last good checkpoint (previous epoch) stays on disk.
 */
export class DivergedError extends Error {
  constructor(
    readonly dir: string,
    readonly step: number,
    detail: string,
    lastGood: string,
  ) {
    super(`training in ${dir} diverged at step ${step}: ${detail}; ${lastGood}; try a lower --lr`);
    this.name = 'DivergedError';
  }
}

export function optimizerConfig(s: TrainSettings): OptimizerConfig {
  if (!(s.lr > 0)) throw new ArgumentError('fit', 'settings.lr', `${s.lr} must be positive`);
  if (s.optimizer === 'sgd') return { kind: 'sgd', lr: s.lr, momentum: s.momentum, weightDecay: s.weightDecay };
  return { kind: s.optimizer, lr: s.lr, weightDecay: s.weightDecay };
}

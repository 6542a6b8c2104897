// The small IMP study the prune tests run (Meso-4 at 32 px on a tiny synthetic set, one Adam epoch,
// one level of 20% global pruning), so each test states only what it changes.
import type { ImpConfig } from '../../src/prune/imp.js';
import type { TrainSettings } from '../../src/train/types.js';

export type TinyImpOverrides = Partial<Omit<ImpConfig, 'train'>> & { train?: Partial<TrainSettings> };

export function tinyImpConfig(o: TinyImpOverrides = {}): ImpConfig {
  const { train, ...rest } = o;
  return {
    model: 'meso4',
    data: 'synthetic:train=32,val=16,test=16',
    size: 32,
    levels: 1,
    rate: 0.2,
    sparsities: null,
    scope: 'global',
    rewind: 'init',
    pruneLast: false,
    ...rest,
    train: { epochs: 1, batch: 16, lr: 1e-3, optimizer: 'adam', momentum: 0.9, weightDecay: 0, schedule: 'constant', warmupSteps: 0, patience: 0, seed: 0, flip: true, ...train },
  };
}

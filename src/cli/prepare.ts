// Everything a training command checks before it creates or touches its run folder (issue 14: a failed
// start must leave nothing behind, or the corrected command is refused as "made with other settings").
import { CropModeError, checkTrainingSplits, openDataset, type DatasetSplits } from '../data/datasets.js';
import { createModel } from '../nn/models/index.js';
import { dataOptions, type RunSpec } from './flags.js';

/** Opens `--data` and checks its splits can train a detector; errors name the flag. */
export async function openTrainingData(spec: Pick<RunSpec, 'data' | 'size' | 'train' | 'crop'>, flag = '--data'): Promise<DatasetSplits> {
  let data: DatasetSplits;
  try {
    data = await openDataset(spec.data, dataOptions(spec));
    checkTrainingSplits(data);
  } catch (e) {
    if (e instanceof CropModeError) throw new Error(`--crop ${e.mode} does not apply to ${e.layout} (${flag} ${spec.data}); use ${e.modes.join(' or ')}`);
    throw new Error(`${flag} ${spec.data}: ${(e as Error).message.split('\n')[0]}`);
  }
  return data;
}

/** Builds the model once and drops it, so a size the model cannot take fails before any file exists. */
export function checkModel(spec: Pick<RunSpec, 'model' | 'size'>): void {
  try {
    createModel(spec.model, { size: spec.size }).dispose();
  } catch (e) {
    throw new Error(`--model ${spec.model} --size ${spec.size}: ${(e as Error).message.split('\n')[0]}`);
  }
}


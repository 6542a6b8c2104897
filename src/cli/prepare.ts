// Everything a training command checks before it creates or touches its run folder (issue 14: a failed
// start must leave nothing behind, or the corrected command is refused as "made with other settings").
import { CropModeError, checkReadableSplits, checkTrainingSplits, openDataset, type DatasetSplits } from '../data/datasets.js';
import { initDevice } from '../tensor/device.js';
import { checkStepFits } from '../train/limits.js';
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
    throw dataError(flag, spec.data, e);
  }
  if (data.layout === 'synthetic') return data;
  // Face crops detect on the device, so it opens first (the commands open it next anyway); a device
  // that fails to open is not the data's fault, so its error stays outside the --data prefix.
  await initDevice();
  await checkReadableSplits(data).catch((e: unknown) => {
    throw dataError(flag, spec.data, e);
  });
  return data;
}

function dataError(flag: string, data: string, e: unknown): Error {
  return new Error(`${flag} ${data}: ${(e as Error).message.split('\n')[0]}`);
}

/** Builds the model once and drops it, so a size the model cannot take fails before any file exists. */
export function checkModel(spec: Pick<RunSpec, 'model' | 'size'>): void {
  try {
    createModel(spec.model, { size: spec.size }).dispose();
  } catch (e) {
    throw new Error(`--model ${spec.model} --size ${spec.size}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/**
 * checkModel, then the GPU limits of one training step at --size and --batch (train/limits.ts), so a
 * step that cannot run on this device is refused in one line naming those flags, before any file exists.
 */
export async function checkModelFits(spec: Pick<RunSpec, 'model' | 'size' | 'train'>): Promise<void> {
  checkModel(spec);
  await checkStepFits(spec.model, spec.size, spec.train.batch);
}

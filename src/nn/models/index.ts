// The detector zoo, by name.
import type { Module } from '../module.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Meso4, MesoInception4, type DetectorOptions } from './meso.js';
import { CNN5 } from './cnn5.js';
import { ResNet18 } from './resnet.js';
import { ArgumentError, choices } from '../../util/errors.js';

export const MODEL_NAMES = ['meso4', 'mesoinception4', 'cnn5', 'resnet18'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export function isModelName(s: string): s is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(s);
}

/** `s` as a ModelName, or an error naming `fn` and `arg` (for names read from files and flags). */
export function parseModelName(s: string, fn = 'createModel', arg = 'name'): ModelName {
  if (!isModelName(s)) throw new ArgumentError(fn, arg, `'${s}' is not one of ${choices(MODEL_NAMES)}`);
  return s;
}

/** A detector: a Module from images [N, 3, H, W] to one logit per image [N, 1]. */
export interface Detector extends Module {
  forward(x: Tensor): Tensor;
}

/**
 * The Grad-CAM layers of each detector: named modules (a block's end, or a ResNet stage) whose output a
 * forward hook can take (explain/gradcam.ts); the last one is the default Grad-CAM layer.
 */
export const TAP_LAYERS: Record<ModelName, readonly string[]> = {
  meso4: ['block1', 'block2', 'block3', 'block4'],
  mesoinception4: ['block1', 'block2', 'block3', 'block4'],
  cnn5: ['block1', 'block2', 'block3', 'block4', 'block5'],
  resnet18: ['layer1', 'layer2', 'layer3', 'layer4'],
};

export function createModel(name: ModelName, o: DetectorOptions & { seed?: number }): Detector {
  let m: Detector;
  // Checked at run time too: JavaScript callers and names read from files bypass the type.
  switch (parseModelName(name)) {
    case 'meso4':
      m = new Meso4(o);
      break;
    case 'mesoinception4':
      m = new MesoInception4(o);
      break;
    case 'cnn5':
      m = new CNN5(o);
      break;
    case 'resnet18':
      m = new ResNet18(o);
      break;
  }
  if (o.seed !== undefined) m.initialize(o.seed);
  return m;
}

/**
 * The input size a model gets when none is given: 64 px on the synthetic set (fast on a CPU), else
 * the study's sizes (224 for ResNet-18, 256 for the others).
 */
export function defaultInputSize(model: string, data: string): number {
  if (data === 'synthetic' || data.startsWith('synthetic:')) return 64;
  return model === 'resnet18' ? 224 : 256;
}

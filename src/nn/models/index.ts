// The detector zoo, by CLI name.
import type { Module } from '../module.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Meso4, MesoInception4, type DetectorOptions } from './meso.js';
import { CNN5 } from './cnn5.js';
import { ResNet18 } from './resnet.js';

export const MODEL_NAMES = ['meso4', 'mesoinception4', 'cnn5', 'resnet18'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

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

export function createModel(name: string, o: DetectorOptions & { seed?: number }): Detector {
  let m: Detector;
  switch (name) {
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
    default:
      throw new Error(`--model '${name}' is not one of ${MODEL_NAMES.join(', ')}`);
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

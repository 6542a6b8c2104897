// The nn layer's public face: modules, layers, the detector zoo, checkpoints, optimizers, schedules.
export * from './module.js';
export * from './layers.js';
export * from './models/index.js';
export { Meso4, MesoInception4, type DetectorOptions } from './models/meso.js';
export { CNN5 } from './models/cnn5.js';
export { ResNet18 } from './models/resnet.js';
export * from './checkpoint.js';
export * from './optim/optimizer.js';
export * from './optim/schedule.js';

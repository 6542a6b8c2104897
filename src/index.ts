// `ticketlab`, the library: the tensor engine (device, tensors, scopes, raw ops), autograd (`F`: the
// tape and every differentiable op), nn (modules, layers, detectors, checkpoints, optimizers) and the
// training loop. Pruning, explanations, data and test helpers are the subpath entries
// `ticketlab/prune`, `ticketlab/explain`, `ticketlab/data` and `ticketlab/testing`.
//
// Differentiable ops live under the `F` namespace because their names (add, matmul, sum, ...) are the
// raw, non-differentiable tensor ops' names too.
export * from './tensor/index.js';
export * as F from './autograd/index.js';
export { backward, noGrad, isGradEnabled, type BackwardOptions } from './autograd/tape.js';
export * from './nn/index.js';
export * from './train/index.js';
export { loadSafetensors, saveSafetensors, type HostTensor, type SafetensorsContents } from './io/safetensors.js';
export { RUN_FILES, runFile, levelDir, oneshotDir, controlDir, type RunFile } from './io/run-paths.js';

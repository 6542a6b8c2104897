// The training layer's public face: the loop, metrics and run folders.
export * from './trainer.js';
export * from './metrics.js';
export * from './run.js';
export * from './bn-reestimate.js';

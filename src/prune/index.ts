// `ticketlab/prune`: masks, magnitude pruning, levels, IMP / one-shot / controls, ticket transfer,
// the mask invariants and `checkRun` (what `ticketlab check` prints), and mask anatomy.
export * from './masks.js';
export * from './magnitude.js';
export * from './level.js';
export * from './imp.js';
export * from './transfer.js';
export * from './invariants.js';
export * from './check.js';
export * from './anatomy.js';
export * from './granularity.js';
export * from './structured.js';
export * from './structure.js';
export * from './filter-companions.js';
export * from './types.js';
export * from './api.js';

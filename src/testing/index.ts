// `ticketlab/testing`: fast-check arbitraries for masks, layer geometries, small prunable models and
// IMP schedules, and property helpers for the mask invariants (the ones `ticketlab check` verifies on
// files). fast-check is an optional peer dependency: install it beside ticketlab to use this entry;
// the other entries never load it. See docs/testing.md for a worked example.
export * from './arbitraries.js';
export * from './properties.js';
export type { HostMasks } from '../prune/masks.js';
export type { Scope, Scores } from '../prune/magnitude.js';
export type { Offence, TensorsByKey } from '../prune/invariants.js';
export type { Granularity } from '../prune/granularity.js';
export type { Shapes } from '../prune/structure.js';

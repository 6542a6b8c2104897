// The pruning vocabulary shared by the API, the CLI and the reports: the scope a threshold is taken
// over and the granularity at which weights are removed. One place, so the flags, the prune() options
// and the sweep config cannot drift apart.

export type { Scope } from './magnitude.js';

// The granularity union and its parser live with the unit layouts they name (granularity.ts).
export { GRANULARITIES, isGranularity, parseGranularity, type Granularity } from './granularity.js';

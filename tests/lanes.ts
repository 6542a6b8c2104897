// Two lanes. The quick lane (`npm test`) checks an install in a few minutes on 2 cores. The long lane
// (`npm run test:long`, TICKETLAB_LANE=long; also run by .ci/run) holds what takes many minutes: real
// processes killed at random (the sweep chaos test), packing and installing the package, every conv
// row-strip tile including the wide ones, and fuzzing at thousands of cases (TICKETLAB_FUZZ_RUNS).
export const LONG_LANE = process.env.TICKETLAB_LANE === 'long';

/** Files only the long lane runs. */
export const LONG_ONLY_FILES = ['tests/prune/sweep-chaos.test.ts', 'tests/package/pack.test.ts', 'tests/**/*.long.test.ts'];

/** Files the long lane runs as well: they hold cases gated on LONG_LANE, or properties that scale with TICKETLAB_FUZZ_RUNS. */
export const LONG_ALSO_FILES = ['tests/tensor/conv.test.ts', 'tests/fuzz/**/*.test.ts'];

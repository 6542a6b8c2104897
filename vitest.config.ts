import { defineConfig } from 'vitest/config';
import { budget, TIME_SCALE } from './tests/budget.js';
import { LONG_ALSO_FILES, LONG_LANE, LONG_ONLY_FILES } from './tests/lanes.js';

// Workers inherit the environment: they all use the scale measured here, at the start of the run.
process.env.TICKETLAB_TIME_SCALE = String(TIME_SCALE);

export default defineConfig({
  test: {
    // tests/lanes.ts: the quick lane (npm test) leaves the long lane's files out.
    include: LONG_LANE ? [...LONG_ONLY_FILES, ...LONG_ALSO_FILES] : ['tests/**/*.test.ts'],
    exclude: LONG_LANE ? ['**/node_modules/**'] : ['**/node_modules/**', ...LONG_ONLY_FILES],
    setupFiles: ['tests/setup.ts'],
    // Each file opens its own Dawn device in a forked process: Dawn's native state does not like
    // sharing a worker thread between files, and forks exit cleanly.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    // Hang guards, not speed limits (tests/budget.ts): they grow with the machine's load.
    testTimeout: budget(300_000),
    hookTimeout: budget(120_000),
  },
});

// The run that tests/fixtures/resume-v1 holds (scripts/make-resume-fixture.mts makes it, with the
// code of any checkout; tests/train/resume-fixture.test.ts resumes it), and how the two compare runs:
// the sha256 of a file, and a metrics.jsonl without its timings. No import from src/: the script
// loads the code of the checkout it is given.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

/** A small IMP run: meso4 at 32 px, the dense level and one pruned level of 2 epochs of 2 steps. */
export const FIXTURE_CONFIG = {
  model: 'meso4' as const,
  data: 'synthetic:train=32,val=16,test=16',
  size: 32,
  train: { epochs: 2, batch: 16, lr: 1e-3, optimizer: 'adam' as const, momentum: 0.9, weightDecay: 0, schedule: 'constant' as const, warmupSteps: 0, patience: 0, seed: 5, flip: true },
  levels: 1,
  rate: 0.8,
  sparsities: null,
  scope: 'global' as const,
  rewind: 'init',
  pruneLast: true,
};

export const FIXTURE_MODES = ['dense', 'sparse', 'auto'] as const;

export function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** The records of a metrics.jsonl without their timings (seconds, images per second). */
export function untimedMetrics(file: string): unknown[] {
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const { seconds: _s, imagesPerSecond: _i, ...r } = JSON.parse(l) as Record<string, unknown>;
      return r;
    });
}

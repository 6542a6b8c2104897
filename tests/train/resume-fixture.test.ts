// Runs made before a change resume bit-identically after it: tests/fixtures/resume-v1 holds small IMP
// runs (dense, sparse and auto kernels) that an earlier version of the code trained and interrupted
// inside level 1, with what that version's own resume then produced (expected.json: the sha256 of each
// level's final weights and the metrics without timings). scripts/make-resume-fixture.mts made them
// from the code before the kernel-choice seam moved into the planner (issue 18): its sparse runs record
// their kernels in sparse-kernels.json as well as kernels.json, and its dense runs never planned their
// masked layers at all.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset } from '../../src/data/datasets.js';
import { runImp, type ImpConfig } from '../../src/prune/imp.js';
import { FIXTURE_CONFIG, FIXTURE_MODES, sha256, untimedMetrics } from '../../scripts/resume-fixture-config.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'resume-v1');

const cfg: ImpConfig = FIXTURE_CONFIG;

describe('a run interrupted by an earlier version resumes bit-identically', () => {
  for (const mode of FIXTURE_MODES) {
    it(`--kernels ${mode}`, async () => {
      const run = fs.mkdtempSync(path.join(os.tmpdir(), `resume-v1-${mode}-`));
      fs.cpSync(path.join(FIXTURES, mode, 'interrupted'), run, { recursive: true });
      const data = await openDataset(cfg.data, { size: cfg.size, seed: 0 });
      await runImp(cfg, { run, data, resume: true, progress: false, log: () => undefined, kernels: mode });
      const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, mode, 'expected.json'), 'utf8')) as Record<string, { final: string; metrics: unknown[] }>;
      for (const [level, e] of Object.entries(expected)) {
        expect(sha256(path.join(run, level, 'final.safetensors')), `${mode} ${level} final weights`).toBe(e.final);
        expect(untimedMetrics(path.join(run, level, 'metrics.jsonl')), `${mode} ${level} metrics`).toEqual(e.metrics);
      }
      fs.rmSync(run, { recursive: true, force: true });
    });
  }
});

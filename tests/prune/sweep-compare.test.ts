// The comparison the chaos test and scripts/slurm-test.sh rely on (src/prune/sweep-compare.ts), on hand-made
// folders: it must see a flipped weight bit, a unit finished twice, and training metrics that differ,
// the last forgiven only for a unit that was stopped gracefully (a mid-epoch checkpoint).
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseSweepConfig, planSweep } from '../../src/prune/sweep.js';
import { encodeSafetensors } from '../../src/io/safetensors.js';
import { RUN_FILES } from '../../src/io/run-paths.js';
import { compareSweeps } from '../../src/prune/sweep-compare.js';

const cfg = (out: string, scopes: string[]) => parseSweepConfig({ out, models: ['meso4'], datasets: ['synthetic'], scopes, methods: ['imp'], imp: { levels: 1, rate: 0.5 } });

const epoch = (e: number, trainLoss: number) =>
  JSON.stringify({ epoch: e, step: 2 * (e + 1), lr: 0.001, seconds: Math.random(), train: { n: 32, loss: trainLoss }, val: { n: 16, loss: 0.69 }, best: e === 0 }) + '\n';

/** A finished copy of the sweep in `out`; `events` are written as the sweep's event log. */
function fakeSweep(out: string, events: Record<string, unknown>[], scopes = ['global']): ReturnType<typeof planSweep> {
  const plan = planSweep(cfg(out, scopes));
  for (const u of plan.units) {
    fs.mkdirSync(u.dir, { recursive: true });
    for (const f of [RUN_FILES.mask, RUN_FILES.start, RUN_FILES.final]) {
      fs.writeFileSync(path.join(u.dir, f), encodeSafetensors({ 'conv1.weight': { dtype: 'F32', shape: [2], data: new Float32Array([0.5, -1]) } }));
    }
    fs.writeFileSync(path.join(u.dir, RUN_FILES.metrics), epoch(0, 0.7) + epoch(1, 0.6));
    fs.writeFileSync(path.join(u.dir, RUN_FILES.result), JSON.stringify({ epochs: 2, bestEpoch: 1, test: { accuracy: 0.5 }, seconds: Math.random() }));
  }
  for (const r of plan.runs) fs.writeFileSync(path.join(r.dir, RUN_FILES.done), '{}');
  const log = [...plan.units.map((u) => ({ event: 'finish', unit: u.id })), ...events];
  fs.writeFileSync(path.join(out, RUN_FILES.sweepEvents), log.map((e) => JSON.stringify(e) + '\n').join(''));
  return plan;
}

describe('compareSweeps', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sweep-compare-'));
  const ref = path.join(root, 'ref');
  fakeSweep(ref, []);
  const unit = 'meso4-synthetic-global/level_1';

  it('equal copies (timings aside) compare equal', () => {
    expect(compareSweeps(fakeSweep(path.join(root, 'same'), []), ref)).toEqual([]);
  });

  it('sees a flipped bit, a unit finished twice, and training metrics that differ', () => {
    const out = path.join(root, 'other');
    const plan = fakeSweep(out, [{ event: 'finish', unit }]);
    const final = path.join(out, unit, RUN_FILES.final);
    const bytes = fs.readFileSync(final);
    bytes[bytes.length - 1] ^= 1;
    fs.writeFileSync(final, bytes);
    fs.writeFileSync(path.join(out, unit, RUN_FILES.metrics), epoch(0, 0.7) + epoch(1, 0.61));
    expect(compareSweeps(plan, ref)).toEqual([`${unit}: finished 2 times`, `${unit}/${RUN_FILES.final}: conv1.weight differs`, `${unit}/${RUN_FILES.metrics}: 2 lines vs 2, or other values`]);
  });

  it("forgives training metrics only for a unit stopped gracefully (its resumed epoch's are partial)", () => {
    const out = path.join(root, 'stopped');
    const plan = fakeSweep(out, [{ event: 'interrupted', unit }]);
    for (const u of ['meso4-synthetic-global/level_0', unit]) fs.writeFileSync(path.join(out, u, RUN_FILES.metrics), epoch(0, 0.7) + epoch(1, 0.61));
    expect(compareSweeps(plan, ref)).toEqual([`meso4-synthetic-global/level_0/${RUN_FILES.metrics}: 2 lines vs 2, or other values`]);
  });

  it("and for the copies of such a dense level (shareDense copies its metrics)", () => {
    const ref2 = path.join(root, 'ref2');
    fakeSweep(ref2, [], ['global', 'layer']);
    const out = path.join(root, 'copied');
    const plan = fakeSweep(out, [{ event: 'interrupted', unit: 'meso4-synthetic-global/level_0' }], ['global', 'layer']);
    for (const u of ['meso4-synthetic-global/level_0', 'meso4-synthetic-layer/level_0', 'meso4-synthetic-layer/level_1']) {
      fs.writeFileSync(path.join(out, u, RUN_FILES.metrics), epoch(0, 0.7) + epoch(1, 0.61));
    }
    expect(compareSweeps(plan, ref2)).toEqual([`meso4-synthetic-layer/level_1/${RUN_FILES.metrics}: 2 lines vs 2, or other values`]);
  });
});

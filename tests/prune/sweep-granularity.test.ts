// A sweep's granularity axis: run names, configs, a dense level shared across scopes and
// granularities, and one-line errors. Nothing here trains.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runWorker } from '../../src/prune/worker.js';
import { checkRun, formatRunCheck } from '../../src/prune/check.js';
import { parseSweepConfig, planSweep } from '../../src/prune/sweep.js';
import { formatPlan } from '../../src/cli/sweep.js';

const base = { out: 'runs/g', models: ['meso4'], datasets: ['synthetic'], scopes: ['layer'], imp: { levels: 2 }, methods: ['imp', 'controls'], controls: { kinds: ['random_prune'], levels: [2] } };

describe('sweep granularities', () => {
  it('one run per granularity and seed, named by tag before the seed, sharing one dense level per seed', () => {
    const plan = planSweep(parseSweepConfig({ ...base, granularities: ['weight', 'block:8', 'filter'], seeds: [0, 1] }));
    expect(plan.runs.map((r) => path.basename(r.dir))).toEqual([
      'meso4-synthetic-layer-weight-s0',
      'meso4-synthetic-layer-block8-s0',
      'meso4-synthetic-layer-filter-s0',
      'meso4-synthetic-layer-weight-s1',
      'meso4-synthetic-layer-block8-s1',
      'meso4-synthetic-layer-filter-s1',
    ]);
    expect(plan.runs[0].config).not.toHaveProperty('granularity');
    expect(plan.runs[1].config.granularity).toBe('block:8');
    expect(plan.runs[2]).toMatchObject({ granularity: 'filter', denseFrom: plan.runs[0].dir });
    expect(plan.runs[4].denseFrom).toBe(plan.runs[3].dir);
    // 2 trained dense levels; per run 2 IMP levels + 1 control
    expect(plan.trainings).toBe(2 + 6 * 3);
    expect(plan.units.find((u) => u.id === 'meso4-synthetic-layer-filter-s1/controls/random_prune/level_2')!.label).toBe('random_prune at filter level 2');
    expect(formatPlan(plan)).toMatch(/granularities weight, block:8, filter/);
  });

  it('without granularities nothing changes: unsuffixed names, no granularity in configs', () => {
    const plan = planSweep(parseSweepConfig(base));
    expect(plan.runs.map((r) => path.basename(r.dir))).toEqual(['meso4-synthetic-layer']);
    expect(plan.runs[0].config).not.toHaveProperty('granularity');
  });

  it('refuses unknown and repeated granularities naming the key', () => {
    expect(() => parseSweepConfig({ ...base, granularities: ['weight', 'block:3'] }, 'g.json')).toThrow(/^g\.json: granularities\[1\] must be one of weight, block:4, block:8, block:16, channel, filter, got "block:3"$/);
    expect(() => parseSweepConfig({ ...base, granularities: ['filter', 'filter'] }, 'g.json')).toThrow(/^g\.json: granularities lists 'filter' twice$/);
    expect(() => parseSweepConfig({ ...base, granularities: [] }, 'g.json')).toThrow(/granularities must not be empty/);
  });
});

describe('a granularity sweep, trained', () => {
  it('one worker runs weight and filter cells from one dense level; each run checks clean at its granularity', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'sweep-gran-'));
    const plan = planSweep(
      parseSweepConfig({
        out,
        models: ['meso4'],
        datasets: [{ name: 'syn', spec: 'synthetic:train=16,val=8,test=8' }],
        size: 32,
        scopes: ['layer'],
        methods: ['imp', 'controls'],
        controls: { kinds: ['random_prune'], levels: [1] },
        train: { epochs: 1, batch: 8, patience: 0 },
        imp: { levels: 1, rate: 0.5 },
        granularities: ['weight', 'filter'],
      }),
    );
    const res = await runWorker(plan, { name: 'w', staleMs: 60_000, pollMs: 10, progress: false, log: () => undefined });
    expect(res.allDone).toBe(true);
    for (const r of plan.runs) {
      const c = await checkRun(r.dir);
      expect(c.ok, formatRunCheck(c)).toBe(true);
      expect(c.results.find((x) => x.id === 'structure')!.note).toContain(`granularity ${r.granularity}`);
    }
    const cfg = JSON.parse(fs.readFileSync(path.join(plan.runs[1].dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg.granularity).toBe('filter');
  });
});

// The report over seeds: grouping runs that differ only in the seed, mean/sd/n, the verdict rule (which
// reduces to the single-run rule for one seed), summary.csv over seeds and the shaded bands. Fake run
// folders written by the test: no training.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { collectRuns } from '../../src/report/collect.js';
import { ticketVerdicts, writeRunReport } from '../../src/report/run-report.js';
import { hasSeeds, SEED_SUMMARY_COLUMNS, seedGroups, seedRows, seedVerdicts, stat } from '../../src/report/seeds.js';
import { parseCsv } from '../../src/util/csv.js';

const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `seeds-${name}-`));

const metrics = (accuracy: number) => ({ n: 100, loss: 0.5, accuracy, balancedAccuracy: accuracy, auc: 0.5 + accuracy / 2, tp: 1, tn: 1, fp: 1, fn: 1 });

function level(dir: string, sparsity: number, test: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const total = 1000;
  const kept = Math.round(total * (1 - sparsity));
  fs.writeFileSync(path.join(dir, 'sparsity.json'), JSON.stringify({ layers: [{ key: 'fc.weight', total, kept, pruned: total - kept, sparsity }], total, kept, pruned: total - kept, sparsity, parametersLeft: kept, parameters: total }));
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), JSON.stringify({ final: true, bestEpoch: 1, test: metrics(test) }) + '\n');
  fs.writeFileSync(path.join(dir, 'result.json'), JSON.stringify({ epochs: 1, steps: 1, bestEpoch: 1, bestVal: metrics(test), test: metrics(test), stoppedEarly: false, seconds: 1, imagesPerSecond: 1 }));
}

interface Accs {
  dense: number;
  imp: number[];
  controls?: Record<string, number>;
}

/** A run folder: dense, IMP levels at 50%, 75%..., controls at level 1. */
function run(root: string, name: string, seed: number, a: Accs, extra: Record<string, unknown> = {}): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({ command: 'imp', model: 'meso4', data: 'synthetic:train=8', size: 32, train: { epochs: 1, lr: 0.001, seed }, levels: a.imp.length, rate: 0.5, scope: 'global', rewind: 'init', ...extra }),
  );
  level(path.join(dir, 'level_0'), 0, a.dense);
  a.imp.forEach((acc, i) => level(path.join(dir, `level_${i + 1}`), 1 - 0.5 ** (i + 1), acc));
  for (const [kind, acc] of Object.entries(a.controls ?? {})) level(path.join(dir, 'controls', kind, 'level_1'), 0.5, acc);
  return dir;
}

describe('statistics', () => {
  it('mean and sample sd (n - 1); sd 0 for one value', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 8 }), (xs) => {
        const s = stat(xs)!;
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
        expect(s.mean).toBeCloseTo(mean, 12);
        const v = xs.length > 1 ? xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1) : 0;
        expect(s.sd).toBeCloseTo(Math.sqrt(v), 12);
        expect(s.n).toBe(xs.length);
      }),
    );
    expect(stat([])).toBeNull();
  });
});

describe('seed groups and verdicts', () => {
  it('groups runs that differ only in the seed; other settings split groups', () => {
    const root = tmp('groups');
    const dirs = [
      run(root, 'm-s-global-s0', 0, { dense: 0.9, imp: [0.9] }),
      run(root, 'm-s-global-s1', 1, { dense: 0.9, imp: [0.9] }),
      run(root, 'm-s-layer-s0', 0, { dense: 0.9, imp: [0.9] }, { scope: 'layer' }),
      run(root, 'm-s-global-lr-s0', 0, { dense: 0.9, imp: [0.9] }, { train: { epochs: 1, lr: 0.01, seed: 0 } }),
    ];
    const groups = seedGroups(collectRuns(dirs));
    expect(groups.map((g) => [g.name, g.seeds])).toEqual([
      ['m-s-global', [0, 1]],
      ['m-s-layer', [0]],
      ['m-s-global-lr', [0]],
    ]);
    expect(hasSeeds(groups)).toBe(true);
    expect(hasSeeds(groups.slice(1))).toBe(false);
  });

  it('the rule: within max(1 point, dense sd) of the dense mean; mean - sd above every control mean + sd', () => {
    const root = tmp('rule');
    // dense 90 +- 2; IMP level 1 at 89 (within the dense spread, though 1 point is the floor), level 2 at 86
    // controls at level 1: reinit 80-82 (clearly below), random_prune 87-89 (within the ticket's spread)
    const dirs = [
      run(root, 'x-s0', 0, { dense: 0.9, imp: [0.885, 0.86], controls: { reinit: 0.8, random_prune: 0.87 } }),
      run(root, 'x-s1', 1, { dense: 0.92, imp: [0.895, 0.86], controls: { reinit: 0.82, random_prune: 0.89 } }),
      run(root, 'x-s2', 2, { dense: 0.88, imp: [0.89, 0.86], controls: { reinit: 0.81, random_prune: 0.88 } }),
    ];
    const rows = seedRows(seedGroups(collectRuns(dirs)));
    const vs = seedVerdicts(rows);
    const l1 = vs.find((v) => v.level === 1)!;
    expect(l1.ticket.n).toBe(3);
    expect(l1.dense.mean).toBeCloseTo(0.9, 12);
    expect(l1.dense.sd).toBeCloseTo(0.02, 12);
    expect(l1.tolerancePoints).toBeCloseTo(2, 9);
    expect(l1.matchesDense).toBe(true);
    expect(l1.beatsControls).toBe(false); // random_prune 88 +- 1 overlaps the ticket 89 +- 0.5
    expect(l1.winning).toBe(false);
    const l2 = vs.find((v) => v.level === 2)!;
    expect(l2.deltaPoints).toBeCloseTo(-4, 9);
    expect(l2.matchesDense).toBe(false);
    expect(l2.beatsControls).toBeNull();
    // without the overlapping control, level 1 wins
    const noRp = seedVerdicts(rows.filter((r) => r.method !== 'random_prune'));
    expect(noRp.find((v) => v.level === 1)!.winning).toBe(true);
  });

  it('with one seed per cell the rule is the single-run rule', () => {
    const acc = fc.double({ min: 0.5, max: 1, noNaN: true });
    fc.assert(
      fc.property(acc, fc.array(acc, { minLength: 1, maxLength: 3 }), fc.option(acc, { nil: undefined }), (dense, imp, control) => {
        const root = tmp('one');
        const runs = collectRuns([run(root, 'r', 0, { dense, imp, controls: control === undefined ? {} : { reinit: control } })]);
        const single = ticketVerdicts(runs);
        const over = seedVerdicts(seedRows(seedGroups(runs)));
        expect(over.map((v) => [v.level, v.winning, v.matchesDense, v.beatsControls])).toEqual(single.map((v) => [v.level, v.winning, v.matchesDense, v.beatsControls]));
        fs.rmSync(root, { recursive: true, force: true });
      }),
      { numRuns: 25 },
    );
  });

  it('the report over seeds: summary.csv with mean, sd and n; per-folder rows in summary_runs.csv; bands in the plots', async () => {
    const root = tmp('report');
    const dirs = [0, 1, 2].map((s) => run(root, `m-s-global-s${s}`, s, { dense: 0.9 + 0.01 * s, imp: [0.895 + 0.01 * s, 0.8] }));
    const r = await writeRunReport(dirs, root);
    const [head, ...body] = parseCsv(fs.readFileSync(path.join(root, 'summary.csv'), 'utf8'));
    expect(head).toEqual([...SEED_SUMMARY_COLUMNS]);
    const rowOf = (method: string, level: number) => Object.fromEntries(head.map((h, i) => [h, body.find((b) => b[head.indexOf('method')] === method && b[head.indexOf('level')] === String(level))![i]]));
    const l1 = rowOf('imp-global', 1);
    expect(l1).toMatchObject({ group: 'm-s-global', n: '3', seeds: '0 1 2', status: '3/3 finished' });
    expect(Number(l1.test_accuracy_mean)).toBeCloseTo(0.905, 6);
    expect(Number(l1.test_accuracy_sd)).toBeCloseTo(0.01, 6);
    expect(rowOf('imp-global', 0).winning_ticket).toBe('dense');
    expect(parseCsv(fs.readFileSync(path.join(root, 'summary_runs.csv'), 'utf8'))).toHaveLength(1 + 9);
    const svg = fs.readFileSync(path.join(root, 'accuracy_vs_sparsity.svg'), 'utf8');
    expect(svg).toContain('<polygon');
    expect(svg).toContain('imp-global (n=3)');
    expect(r.seedVerdicts!.map((v) => [v.level, v.winning])).toEqual([
      [1, true],
      [2, false],
    ]);
    expect(fs.readFileSync(path.join(root, 'report.html'), 'utf8')).toContain('Winning tickets over seeds');
    // a single-seed report is unchanged: no summary_runs.csv, per-folder summary.csv
    const one = tmp('single');
    await writeRunReport([run(one, 'r', 0, { dense: 0.9, imp: [0.9] })], one);
    expect(fs.existsSync(path.join(one, 'summary_runs.csv'))).toBe(false);
    expect(fs.readFileSync(path.join(one, 'summary.csv'), 'utf8').split('\n')[0].startsWith('model,data,method,level')).toBe(true);
  });
});

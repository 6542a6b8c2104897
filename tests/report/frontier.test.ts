// The granularity frontier from fake run folders (no training): ms per step from metrics.jsonl (median
// over epochs of seconds / steps), mean +- sd over seeds per granularity and level, the dense level
// shared by every granularity, the CSV, and the report section only when a run has a granularity.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { collectRuns } from '../../src/report/collect.js';
import { frontierRows, hasGranularities, levelStepMs } from '../../src/report/frontier.js';
import { writeRunReport } from '../../src/report/run-report.js';
import { parseCsv } from '../../src/util/csv.js';

const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `frontier-${name}-`));
const metrics = (accuracy: number) => ({ n: 100, loss: 0.5, accuracy, balancedAccuracy: accuracy, auc: 0.5 + accuracy / 2, tp: 1, tn: 1, fp: 1, fn: 1 });

/** A finished level: 3 epochs of 10 steps taking `secs` seconds each. */
function level(dir: string, sparsity: number, test: number, secs: number[]): void {
  fs.mkdirSync(dir, { recursive: true });
  const total = 1000;
  const kept = Math.round(total * (1 - sparsity));
  fs.writeFileSync(path.join(dir, 'sparsity.json'), JSON.stringify({ layers: [{ key: 'fc.weight', total, kept, pruned: total - kept, sparsity }], total, kept, pruned: total - kept, sparsity, parametersLeft: kept, parameters: total }));
  const lines = secs.map((s, e) => ({ epoch: e, step: (e + 1) * 10, lr: 1e-3, seconds: s, imagesPerSecond: 1, train: metrics(test), val: metrics(test), best: true }));
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), [...lines, { final: true, bestEpoch: 1, test: metrics(test) }].map((x) => JSON.stringify(x)).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'result.json'), JSON.stringify({ epochs: secs.length, steps: secs.length * 10, bestEpoch: 1, bestVal: metrics(test), test: metrics(test), stoppedEarly: false, seconds: 1, imagesPerSecond: 1 }));
}

function run(root: string, g: string | null, seed: number, accs: [number, number], secs: [number, number]): string {
  const dir = path.join(root, `m-${g ?? 'weight'}-s${seed}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ command: 'imp', model: 'meso4', data: 'synthetic', size: 32, train: { epochs: 3, batch: 8, seed }, levels: 1, rate: 0.5, scope: 'layer', rewind: 'init', ...(g ? { granularity: g } : {}) }));
  level(path.join(dir, 'level_0'), 0, accs[0], [secs[0], secs[0], 9]);
  level(path.join(dir, 'level_1'), 0.5, accs[1], [secs[1], 99, secs[1]]);
  return dir;
}

describe('granularity frontier', () => {
  it('ms per step: the median over epochs of seconds * 1000 / steps', () => {
    const d = tmp('ms');
    level(d, 0, 0.8, [1, 3, 2]);
    expect(levelStepMs(d)).toBe(200);
    expect(levelStepMs(path.join(d, 'none'))).toBeNull();
  });

  it('mean +- sd over seeds per granularity and level; dense is each granularity\'s level 0', () => {
    const root = tmp('rows');
    const dirs = [run(root, null, 0, [0.8, 0.7], [1, 0.5]), run(root, null, 1, [0.9, 0.9], [1, 0.7]), run(root, 'filter', 0, [0.8, 0.6], [1, 0.2]), run(root, 'filter', 1, [0.9, 0.6], [1, 0.4])];
    const runs = collectRuns(dirs);
    expect(hasGranularities(runs)).toBe(true);
    expect(hasGranularities(runs.slice(0, 2))).toBe(false);
    const rows = frontierRows(runs);
    expect(rows.map((r) => [r.granularity, r.method, r.level])).toEqual([
      ['filter', 'dense', 0],
      ['filter', 'imp-layer', 1],
      ['weight', 'dense', 0],
      ['weight', 'imp-layer', 1],
    ]);
    const f1 = rows[1];
    expect(f1.testAccuracy.mean).toBeCloseTo(0.6, 12);
    expect(f1.density.mean).toBeCloseTo(0.5, 12);
    expect(f1.msPerStep!.mean).toBeCloseTo(30, 9);
    expect(f1.msPerStep!.sd).toBeCloseTo(Math.SQRT2 * 10, 9);
    expect(rows[3].testAccuracy.sd).toBeCloseTo(Math.SQRT2 * 0.1, 12);
  });

  it('the report gains the section, two plots and granularity_frontier.csv; runs without granularities do not', async () => {
    const root = tmp('report');
    const dirs = [run(root, null, 0, [0.8, 0.7], [1, 0.5]), run(root, 'block:8', 0, [0.8, 0.75], [1, 0.25])];
    const out = tmp('out');
    const rep = await writeRunReport(dirs, out);
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toContain('Granularity: accuracy vs density and vs time');
    expect(rep.files.map((f) => path.basename(f))).toEqual(expect.arrayContaining(['granularity_frontier.csv', 'accuracy_vs_density_by_granularity.svg', 'accuracy_vs_ms_by_granularity.svg']));
    const [head, ...body] = parseCsv(fs.readFileSync(path.join(out, 'granularity_frontier.csv'), 'utf8'));
    expect(head).toContain('ms_per_step_mean');
    expect(body.find((r) => r[2] === 'block:8' && r[4] === '1')![head.indexOf('ms_per_step_mean')]).toBe('25');
    const plain = tmp('plain');
    await writeRunReport([dirs[0]], plain);
    expect(fs.readFileSync(path.join(plain, 'report.html'), 'utf8')).not.toContain('Granularity: accuracy');
  });
});

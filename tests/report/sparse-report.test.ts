// The report's dense-vs-sparse section from level_<k>/sparse-kernels.json files.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSparsePlans, sparseKernelSection } from '../../src/report/sparse-report.js';
import type { KernelPlan } from '../../src/nn/sparse.js';

function plan(density: number, dense: number, csr: number, blocked: number): KernelPlan {
  const ms = { dense, csr, blocked };
  return {
    mode: 'auto',
    input: [2, 3, 32, 32],
    layers: [
      {
        layer: 'conv2',
        kind: 'conv',
        density,
        problem: { kind: 'conv', xShape: [2, 8, 16, 16], wShape: [8, 8, 5, 5], opts: { padding: 'same' } },
        kernels: { forward: csr < dense ? 'csr' : 'dense', 'input-grad': 'dense', 'weight-grad': 'blocked' },
        ms: { forward: ms, 'input-grad': ms, 'weight-grad': ms },
      },
    ],
  };
}

describe('sparse kernel report section', () => {
  it('plots one line per kernel against density and tabulates every level with the chosen kernels', () => {
    const run = fs.mkdtempSync(path.join(os.tmpdir(), 'sparse-report-'));
    const levels: [number, KernelPlan][] = [[0, plan(1, 2, 9, 2.5)], [3, plan(0.512, 2, 4, 1.5)], [7, plan(0.21, 2, 0.8, 1)]];
    for (const [k, p] of levels) {
      fs.mkdirSync(path.join(run, `level_${k}`));
      fs.writeFileSync(path.join(run, `level_${k}`, 'sparse-kernels.json'), JSON.stringify(p));
    }
    fs.mkdirSync(path.join(run, 'level_9')); // no record: skipped
    expect(readSparsePlans(run).map((p) => p.level)).toEqual([0, 3, 7]);
    const s = sparseKernelSection({ dir: run, name: 'r' })!;
    expect(s.heading).toContain('Dense vs sparse');
    for (const name of ['dense', 'sparse: compressed rows', 'sparse: blocked']) expect(s.html).toContain(name);
    expect(s.html).toContain('51.2%');
    expect(s.html).toContain('csr / dense / blocked');
    // level 7: dense 2+2+2 = 6 ms, chosen csr 0.8 + dense 2 + blocked 1 = 3.8 ms
    expect(s.html).toContain(`${(6 / 3.8).toFixed(2)}x`);
  });
  it('is absent without records and names a broken file', () => {
    const run = fs.mkdtempSync(path.join(os.tmpdir(), 'sparse-report-'));
    expect(sparseKernelSection({ dir: run, name: 'r' })).toBeNull();
    fs.mkdirSync(path.join(run, 'level_1'));
    fs.writeFileSync(path.join(run, 'level_1', 'sparse-kernels.json'), '{');
    expect(() => readSparsePlans(run)).toThrow(/level_1.sparse-kernels\.json: not valid JSON/);
  });
});

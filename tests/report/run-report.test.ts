// collect + run report over run trees written by the test itself (fake result.json, sparsity.json,
// metrics.jsonl, config.json): no training, no GPU work.
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { collectRun, collectRuns, dataLabel, MalformedRunError } from '../../src/report/collect.js';
import { EXTRA_COLUMNS, SUMMARY_COLUMNS, spreadLevels, ticketVerdicts, writeRunReport } from '../../src/report/run-report.js';
import { parseCsv } from '../../src/util/csv.js';
import { reportCommand } from '../../src/cli/report.js';

const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `report-${name}-`));

function writeJson(file: string, v: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(v, null, 2));
}

const metrics = (accuracy: number, auc = 0.9) => ({ n: 100, loss: 0.5, accuracy, balancedAccuracy: accuracy - 0.01, auc, tp: 1, tn: 1, fp: 1, fn: 1 });

const LAYERS = [
  { key: 'conv1.weight', total: 200 },
  { key: 'conv2.weight', total: 600 },
  { key: 'fc1.weight', total: 200 },
];

/** sparsity.json with the given total sparsity; conv2 pruned harder than the rest, as global pruning does. */
function sparsityJson(s: number) {
  const per = LAYERS.map((l) => {
    const sp = l.key === 'conv2.weight' ? Math.min(1, s * 1.2) : s * 0.7;
    const kept = Math.round(l.total * (1 - sp));
    return { key: l.key, total: l.total, kept, pruned: l.total - kept, sparsity: (l.total - kept) / l.total };
  });
  const total = per.reduce((a, l) => a + l.total, 0);
  const kept = per.reduce((a, l) => a + l.kept, 0);
  return { layers: per, total, kept, pruned: total - kept, sparsity: s, parametersLeft: 1500 - (total - kept), parameters: 1500 };
}

interface FakeLevel {
  sparsity: number;
  /** Test accuracy; undefined = unfinished (no result.json). */
  test?: number;
  val?: number;
  epochs?: number;
}

function writeLevel(dir: string, l: FakeLevel): void {
  fs.mkdirSync(dir, { recursive: true });
  writeJson(path.join(dir, 'sparsity.json'), sparsityJson(l.sparsity));
  const epochs = l.epochs ?? 3;
  const logged = l.test === undefined ? 1 : epochs;
  const lines: unknown[] = [];
  for (let e = 0; e < logged; e++) {
    const acc = (l.val ?? 0.8) - 0.05 * (logged - 1 - e);
    lines.push({ epoch: e, step: (e + 1) * 10, lr: 1e-4, seconds: 1, imagesPerSecond: 100 + e, train: metrics(acc + 0.05), val: metrics(acc), best: true });
  }
  if (l.test !== undefined) lines.push({ final: true, bestEpoch: epochs, test: metrics(l.test, 0.5 + l.test / 2) });
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), lines.map((x) => JSON.stringify(x)).join('\n') + '\n');
  if (l.test !== undefined) {
    writeJson(path.join(dir, 'result.json'), {
      epochs,
      steps: epochs * 10,
      bestEpoch: epochs,
      bestVal: metrics(l.val ?? 0.8),
      test: metrics(l.test, 0.5 + l.test / 2),
      stoppedEarly: false,
      seconds: 3,
      imagesPerSecond: 123.4,
    });
  }
}

interface FakeRun {
  model?: string;
  data?: string;
  scope?: 'global' | 'layer';
  imp: FakeLevel[];
  oneshot?: Record<number, FakeLevel>;
  controls?: Record<string, Record<number, FakeLevel>>;
  gradcam?: boolean;
}

function writeRun(dir: string, r: FakeRun): string {
  const scope = r.scope ?? 'global';
  writeJson(path.join(dir, 'config.json'), {
    command: 'imp',
    model: r.model ?? 'meso4',
    data: r.data ?? '/data/OpenForensics/',
    size: 64,
    train: { epochs: 3, batch: 8, lr: 1e-4, optimizer: 'adam', seed: 0 },
    levels: r.imp.length - 1,
    rate: 0.2,
    sparsities: null,
    scope,
    rewind: 'init',
    pruneLast: false,
  });
  r.imp.forEach((l, k) => writeLevel(path.join(dir, `level_${k}`), l));
  for (const [k, l] of Object.entries(r.oneshot ?? {})) writeLevel(path.join(dir, `oneshot_${scope}`, `level_${k}`), l);
  for (const [kind, ls] of Object.entries(r.controls ?? {})) for (const [k, l] of Object.entries(ls)) writeLevel(path.join(dir, 'controls', kind, `level_${k}`), l);
  if (r.gradcam) {
    fs.mkdirSync(path.join(dir, 'gradcam'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'gradcam', 'gradcam.html'), '<section>grad-cam</section>');
    fs.writeFileSync(path.join(dir, 'gradcam', 'grid.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    fs.writeFileSync(path.join(dir, 'gradcam', 'summary.csv'), 'level,sparsity,n,frobenius_mean\n0,0,8,0\n2,0.36,8,3.25\n');
    // overlays one folder down are not grids
    fs.mkdirSync(path.join(dir, 'gradcam', 'level_2'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'gradcam', 'level_2', '00_real.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
  }
  return dir;
}

/** A global-scope IMP run: dense 90%, levels at 20/36/48.8% (the last unfinished), one-shot and controls at level 2. */
function standardRun(root: string, name = 'meso4-of-global', extra: Partial<FakeRun> = {}): string {
  return writeRun(path.join(root, name), {
    imp: [{ sparsity: 0, test: 0.9 }, { sparsity: 0.2, test: 0.905 }, { sparsity: 0.36, test: 0.893 }, { sparsity: 0.488 }],
    oneshot: { 2: { sparsity: 0.36, test: 0.86 } },
    controls: { reinit: { 2: { sparsity: 0.36, test: 0.8 } }, random_prune: { 2: { sparsity: 0.36, test: 0.75 } } },
    gradcam: true,
    ...extra,
  });
}

describe('collect', () => {
  it('reads every level folder with its method, sparsity and metrics; unfinished levels are listed', () => {
    const run = standardRun(tmp('collect'));
    const c = collectRun(run);
    expect(c.model).toBe('meso4');
    expect(c.data).toBe('OpenForensics');
    expect(c.scope).toBe('global');
    expect(c.rows.map((r) => `${r.method}:${r.level}`)).toEqual([
      'imp-global:0',
      'imp-global:1',
      'imp-global:2',
      'imp-global:3',
      'oneshot-global:2',
      'reinit:2',
      'random_prune:2',
    ]);
    const l2 = c.rows.find((r) => r.method === 'imp-global' && r.level === 2)!;
    expect(l2).toMatchObject({ finished: true, sparsity: 0.36, testAccuracy: 0.893, bestValAccuracy: 0.8, epochsToBest: 3, epochs: 3, imagesPerSecond: 123.4 });
    expect(l2.testAuc).toBeCloseTo(0.5 + 0.893 / 2, 12);
    expect(l2.testBalancedAccuracy).toBeCloseTo(0.883, 12);
    expect(l2.parametersLeft).toBe(sparsityJson(0.36).parametersLeft);
    expect(l2.layers.map((l) => l.key)).toEqual(LAYERS.map((l) => l.key));
    expect(l2.curve.map((p) => p.epoch)).toEqual([1, 2, 3]);
    const l3 = c.rows.find((r) => r.level === 3)!;
    expect(l3).toMatchObject({ finished: false, sparsity: 0.488, testAccuracy: null, epochs: 1, epochsToBest: null });
    expect(c.gradcam?.html).toBe(path.join(run, 'gradcam', 'gradcam.html'));
    expect(c.gradcam?.images).toEqual([path.join(run, 'gradcam', 'grid.png')]);
  });

  it('a level folder with nothing in it yet is unfinished, not an error', () => {
    const run = standardRun(tmp('empty'));
    fs.mkdirSync(path.join(run, 'level_4'));
    const row = collectRun(run).rows.find((r) => r.level === 4)!;
    expect(row).toMatchObject({ finished: false, sparsity: null, epochs: null, curve: [] });
  });

  it('labels datasets by their folder name, synthetic specs as synthetic', () => {
    expect(dataLabel('/data/FaceForensics++/')).toBe('FaceForensics++');
    expect(dataLabel('synthetic:train=10')).toBe('synthetic');
  });

  const malformed: [string, (run: string) => void, RegExp][] = [
    ['result.json that is not JSON', (r) => fs.writeFileSync(path.join(r, 'level_1', 'result.json'), '{"epochs": 3,'), /level_1: malformed result\.json \(invalid JSON/],
    ['result.json without bestEpoch', (r) => writeJson(path.join(r, 'level_2', 'result.json'), { epochs: 3, test: null }), /level_2: malformed result\.json \(bestEpoch is not a number\)/],
    ['bestEpoch -5 (issue 20: report wrote epochs_to_best -5)', (r) => writeJson(path.join(r, 'level_2', 'result.json'), { epochs: 3, bestEpoch: -5, test: null }), /level_2: malformed result\.json \('bestEpoch' is -5, not a whole number >= 0\)/],
    ['bestEpoch after the last epoch', (r) => writeJson(path.join(r, 'level_2', 'result.json'), { epochs: 3, bestEpoch: 7, test: null }), /level_2: malformed result\.json \('bestEpoch' 7 is after the last epoch \(3\)\)/],
    ['epochs 2.5', (r) => writeJson(path.join(r, 'level_2', 'result.json'), { epochs: 2.5, bestEpoch: 1, test: null }), /'epochs' is 2\.5, not a whole number >= 0/],
    ['test accuracy that is a string', (r) => writeJson(path.join(r, 'oneshot_global', 'level_2', 'result.json'), { epochs: 3, bestEpoch: 1, test: { accuracy: '0.9' } }), /oneshot_global[\\/]level_2: malformed result\.json \(test\.accuracy is not a number\)/],
    ['sparsity.json without layers', (r) => writeJson(path.join(r, 'controls', 'reinit', 'level_2', 'sparsity.json'), { sparsity: 0.3 }), /reinit[\\/]level_2: malformed sparsity\.json \(layers is not an array\)/],
    ['a bad line inside metrics.jsonl', (r) => fs.writeFileSync(path.join(r, 'level_0', 'metrics.jsonl'), '{"epoch":0,"val":{"accuracy":0.5}}\n{oops\n{"epoch":1,"val":{"accuracy":0.5}}\n'), /level_0: malformed metrics\.jsonl \(line 2: invalid JSON line/],
    ['config.json without a model', (r) => writeJson(path.join(r, 'config.json'), { data: 'x' }), /malformed config\.json \(model is not a string\)/],
  ];
  for (const [what, damage, msg] of malformed) {
    it(`names the folder and file for ${what}, in one line`, () => {
      const run = standardRun(tmp('bad'));
      damage(run);
      let err: Error | null = null;
      try {
        collectRun(run);
      } catch (e) {
        err = e as Error;
      }
      expect(err).toBeInstanceOf(MalformedRunError);
      expect(err!.message).toMatch(msg);
      expect(err!.message).toContain(run);
      expect(err!.message).not.toContain('\n');
    });
  }

  it('tolerates a torn last line of metrics.jsonl (a run killed mid-write)', () => {
    const run = standardRun(tmp('torn'));
    fs.appendFileSync(path.join(run, 'level_3', 'metrics.jsonl'), '{"epoch":1,"va');
    expect(collectRun(run).rows.find((r) => r.level === 3)!.curve).toHaveLength(1);
  });

  it('refuses folders that are not runs, and the same run twice', () => {
    const root = tmp('notrun');
    expect(() => collectRun(root)).toThrow(/not a run folder \(no config\.json\)/);
    expect(() => collectRun(path.join(root, 'nope'))).toThrow(/no such run folder/);
    const run = standardRun(root);
    expect(() => collectRuns([run, run + '/'])).toThrow(/given twice/);
  });
});

describe('winning-ticket verdicts', () => {
  it('match dense within 1 point and beat the controls where they exist', () => {
    const root = tmp('verdict');
    const run = writeRun(path.join(root, 'r'), {
      imp: [{ sparsity: 0, test: 0.9 }, { sparsity: 0.2, test: 0.89 }, { sparsity: 0.36, test: 0.8899 }, { sparsity: 0.488, test: 0.95 }],
      controls: { reinit: { 3: { sparsity: 0.488, test: 0.96 } }, random_prune: { 3: { sparsity: 0.488, test: 0.5 } } },
    });
    const v = ticketVerdicts(collectRuns([run]));
    const at = (k: number) => v.find((x) => x.level === k)!;
    expect(at(1)).toMatchObject({ matchesDense: true, beatsControls: null, winning: true }); // exactly 1 point below
    expect(at(2)).toMatchObject({ matchesDense: false, winning: false });
    expect(at(3)).toMatchObject({ matchesDense: true, beatsControls: false, winning: false }); // reinit does better
    expect(at(3).controls.map((c) => c.kind).sort()).toEqual(['random_prune', 'reinit']);
    expect(at(1).deltaPoints).toBeCloseTo(-1, 9);
  });

  it('picks up to four IMP levels spread from first to last for the density chart', () => {
    expect(spreadLevels([0, 1, 2, 3, 4, 5, 6, 7, 8])).toEqual([1, 3, 6, 8]);
    expect(spreadLevels([0, 1, 2])).toEqual([1, 2]);
  });
});

describe('writeRunReport', () => {
  it('writes summary.csv with the documented columns and values, unfinished levels included', async () => {
    const run = standardRun(tmp('csv'));
    const r = await writeRunReport([run], run);
    const rows = parseCsv(fs.readFileSync(path.join(run, 'summary.csv'), 'utf8'));
    expect(rows[0]).toEqual([...SUMMARY_COLUMNS, ...EXTRA_COLUMNS]);
    expect(rows[0].slice(0, 12)).toEqual([
      'model', 'data', 'method', 'level', 'sparsity', 'parameters_left', 'best_val_accuracy', 'test_accuracy', 'test_auc', 'test_balanced_accuracy', 'epochs_to_best', 'epochs',
    ]);
    expect(rows).toHaveLength(1 + 7);
    const get = (method: string, level: number) => {
      const row = rows.find((x) => x[2] === method && x[3] === String(level))!;
      return Object.fromEntries(rows[0].map((c, i) => [c, row[i]]));
    };
    expect(get('imp-global', 2)).toMatchObject({
      model: 'meso4',
      data: 'OpenForensics',
      sparsity: '0.36',
      parameters_left: String(sparsityJson(0.36).parametersLeft),
      best_val_accuracy: '0.8',
      test_accuracy: '0.893',
      test_balanced_accuracy: '0.883',
      epochs_to_best: '3',
      epochs: '3',
      images_per_second: '123.4',
      winning_ticket: 'yes',
      status: 'finished',
    });
    expect(Number(get('imp-global', 2).test_auc)).toBeCloseTo(0.9465, 9);
    expect(get('imp-global', 0).winning_ticket).toBe('dense');
    expect(get('oneshot-global', 2).winning_ticket).toBe('no');
    expect(get('imp-global', 3)).toMatchObject({ status: 'unfinished', test_accuracy: '', sparsity: '0.488', epochs: '1' });
    expect(r.unfinished).toEqual([path.join(run, 'level_3')]);
    expect(r.summaryText).toContain('unfinished');
    expect(r.layerText).toContain('conv2');
  });

  it('plots every method, starting at the shared dense point', async () => {
    const run = standardRun(tmp('svg'));
    await writeRunReport([run], run);
    for (const f of ['accuracy_vs_sparsity.svg', 'auc_vs_sparsity.svg']) {
      const svg = fs.readFileSync(path.join(run, f), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      for (const m of ['imp-global', 'oneshot-global', 'reinit', 'random_prune']) expect(svg, `${f}: ${m}`).toContain(m);
    }
  });

  it('report.html references every file it wrote, the run config and the Grad-CAM outputs', async () => {
    const root = tmp('html');
    const run = standardRun(root);
    const out = path.join(root, 'report');
    const r = await writeRunReport([run], out);
    const names = r.files.map((f) => path.basename(f)).sort();
    expect(names).toEqual(['accuracy_vs_sparsity.svg', 'auc_vs_sparsity.svg', 'layer_density-meso4-of-global.svg', 'layer_sparsity.csv', 'report.html', 'summary.csv']);
    for (const f of r.files) expect(fs.existsSync(f), f).toBe(true);
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    for (const f of names) expect(html, f).toContain(`href="${f}"`);
    expect(html).toContain('href="../meso4-of-global/config.json"');
    expect(html).toContain('href="../meso4-of-global/gradcam/gradcam.html"');
    expect(html).toContain('src="../meso4-of-global/gradcam/grid.png"');
    expect(html).not.toContain('00_real.png');
    expect(html).toContain('href="../meso4-of-global/gradcam/summary.csv"');
    expect(html).toContain('<th class="num">frobenius_mean</th>');
    expect(html).toContain('<td class="num">3.25</td>');
    for (const h of ['Summary', 'Winning tickets', 'Accuracy vs sparsity', 'AUC vs sparsity', 'Per-layer sparsity', 'Training curves', 'Grad-CAM', 'Runs']) expect(html).toContain(`<h2>${h}</h2>`);
    // per-layer table: every prunable layer, every level
    expect(html).toContain('<td>conv2</td>');
    expect(html).toContain('<th class="num">L3</th>');
    // training curves: one per method, the unfinished level drawn too
    expect(html).toContain('meso4-of-global: imp-global');
    expect(html).toContain('level 3, 48.8% (partial)');
    // no leftover temp files from the atomic writes
    expect(fs.readdirSync(out).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('over several models: one overview of the IMP lines plus one plot per model with every method', async () => {
    const root = tmp('multi');
    const a = standardRun(root, 'meso4-of-global');
    const b = standardRun(root, 'cnn5-of-layer', { model: 'cnn5', scope: 'layer', gradcam: false });
    const c = standardRun(root, 'cnn5-of-global', { model: 'cnn5', gradcam: false });
    const r = await writeRunReport([a, b, c], root);
    const overview = fs.readFileSync(path.join(root, 'accuracy_vs_sparsity.svg'), 'utf8');
    expect(overview).toContain('meso4 OpenForensics imp-global');
    expect(overview).toContain('cnn5 OpenForensics imp-layer');
    expect(overview).toContain('cnn5 OpenForensics imp-global');
    const cnn = fs.readFileSync(path.join(root, 'accuracy_vs_sparsity-cnn5-OpenForensics.svg'), 'utf8');
    for (const m of ['imp-global', 'imp-layer', 'oneshot-global', 'oneshot-layer', 'reinit (global)', 'reinit (layer)', 'random_prune (global)', 'random_prune (layer)']) expect(cnn, m).toContain(m);
    expect(fs.existsSync(path.join(root, 'auc_vs_sparsity-meso4-OpenForensics.svg'))).toBe(true);
    const csv = parseCsv(fs.readFileSync(path.join(root, 'summary.csv'), 'utf8'));
    expect(new Set(csv.slice(1).map((x) => x[0]))).toEqual(new Set(['meso4', 'cnn5']));
    expect(r.summaryText.split('\n')[0]).toMatch(/^run\s+model/);
  });
});

describe('ticketlab report', () => {
  const writes: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    writes.length = 0;
  });

  it('prints the summary table and where the files are', async () => {
    vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (writes.push(String(s)), true));
    const root = tmp('cli');
    const run = standardRun(root);
    const out = path.join(root, 'out');
    expect(await reportCommand.run([run, '--out', out])).toBe(0);
    const text = writes.join('');
    expect(text).toMatch(/method\s+level\s+sparsity/);
    expect(text).toContain('oneshot-global');
    expect(text).toContain('winning ticket');
    expect(text).toContain(`wrote 6 files to ${out}/`);
    expect(text).toContain(path.join(out, 'report.html'));
    expect(fs.existsSync(path.join(out, 'summary.csv'))).toBe(true);
  });

  it('writes into the first run folder by default and explains itself in --help', async () => {
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const run = standardRun(tmp('cli2'));
    expect(await reportCommand.run([run, '--quiet'])).toBe(0);
    expect(fs.existsSync(path.join(run, 'report.html'))).toBe(true);
    for (const s of ['--out', 'summary.csv', 'accuracy_vs_sparsity.svg', 'auc_vs_sparsity.svg', 'report.html', 'unfinished', 'Winning ticket']) expect(reportCommand.help).toContain(s);
  });

  it('one-line errors for no run, a bad flag and a malformed folder', async () => {
    await expect(reportCommand.run([])).rejects.toThrow(/give at least one run folder/);
    await expect(reportCommand.run(['x', '--bogus'])).rejects.toThrow(/^report: .*--bogus.*; see 'ticketlab report --help'$/);
    const run = standardRun(tmp('cli3'));
    fs.writeFileSync(path.join(run, 'level_1', 'result.json'), 'nope');
    await expect(reportCommand.run([run])).rejects.toThrow(/level_1: malformed result\.json/);
  });
});

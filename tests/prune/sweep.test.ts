// Sweep config validation (one-line errors naming the key), the plan, and `ticketlab sweep --dry-run`.
// Nothing here trains: the end-to-end run is examples/sweep-synthetic.json (minutes on a CPU).
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { missingDatasets, parseSweepConfig, planSweep, readSweepConfig, sizeFor } from '../../src/prune/sweep.js';
import { formatPlan, sweepCommand } from '../../src/cli/sweep.js';
import { DEFAULT_TRAIN } from '../../src/train/trainer.js';

const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `sweep-${name}-`));

const base = () => ({ out: 'runs/x', models: ['meso4'], datasets: ['synthetic'] });

function errorOf(raw: unknown): string {
  try {
    parseSweepConfig(raw, 'cfg.json');
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

describe('sweep config', () => {
  it('fills the defaults: both scopes, all methods, the study IMP and one-shot points', () => {
    const c = parseSweepConfig(base());
    expect(c.scopes).toEqual(['global', 'layer']);
    expect(c.methods).toEqual(['imp', 'oneshot', 'controls']);
    expect(c.train).toEqual(DEFAULT_TRAIN);
    expect(c.imp).toEqual({ levels: 8, rate: 0.2, sparsities: null, rewind: 'init', pruneLast: false });
    // 60% -> level 4 (59.0%), 80% -> level 7 (79.0%) at 20% per round
    expect(c.oneshotLevels).toEqual([4, 7]);
    expect(c.controlKinds).toEqual(['reinit', 'random_prune']);
    expect(c.controlLevels).toEqual([4, 7]);
    expect(c.datasets).toEqual([{ name: 'synthetic', spec: 'synthetic', size: null }]);
    expect(c.shareDense).toBe(true);
  });

  it('resolves sizes: the dataset size, then size (number or per model), then the defaults', () => {
    const c = parseSweepConfig({ ...base(), models: ['meso4', 'resnet18'], datasets: ['/d/of', { name: 'ff', spec: '/d/ff', size: 128 }], size: { meso4: 96 } });
    expect(sizeFor(c, 'meso4', c.datasets[0])).toBe(96);
    expect(sizeFor(c, 'resnet18', c.datasets[0])).toBe(224);
    expect(sizeFor(c, 'resnet18', c.datasets[1])).toBe(128);
    expect(c.datasets[0].name).toBe('of');
  });

  it('reads both example files', () => {
    const study = readSweepConfig('examples/sweep-study.json');
    expect(study.models).toEqual(['meso4', 'cnn5', 'resnet18']);
    expect(study.datasets).toHaveLength(2);
    expect(study.imp.levels).toBe(8);
    expect(study.imp.rate).toBe(0.2);
    expect(study.oneshotLevels).toEqual([4, 7]);
    const syn = readSweepConfig('examples/sweep-synthetic.json');
    expect(syn.models).toEqual(['meso4']);
    expect(syn.datasets[0].spec.startsWith('synthetic:')).toBe(true);
    expect(syn.train.epochs).toBe(2);
    expect(syn.imp.levels).toBeLessThanOrEqual(3);
    expect(missingDatasets(syn)).toEqual([]);
  });

  const bad: [string, unknown, RegExp][] = [
    ['not an object', [], /^cfg\.json: \(top level\) must be an object/],
    ['an unknown top-level key', { ...base(), epochs: 3 }, /unknown key 'epochs' \(known: description, out, models/],
    ['a missing out', { models: ['meso4'], datasets: ['synthetic'] }, /^cfg\.json: out must be a non-empty string, got nothing$/],
    ['an unknown model', { ...base(), models: ['meso4', 'vgg'] }, /^cfg\.json: models\[1\] must be one of meso4, mesoinception4, cnn5, resnet18, got "vgg"$/],
    ['a model twice', { ...base(), models: ['cnn5', 'cnn5'] }, /models lists 'cnn5' twice/],
    ['no datasets', { ...base(), datasets: [] }, /datasets must not be empty/],
    ['two datasets with one name', { ...base(), datasets: ['/a/data', '/b/data'] }, /datasets\[1\] is named 'data' like datasets\[0\]/],
    ['a bad dataset name', { ...base(), datasets: [{ name: 'a b', spec: 'synthetic' }] }, /datasets\[0\]\.name 'a b' must be letters/],
    ['an unknown dataset key', { ...base(), datasets: [{ spec: 'synthetic', root: 'x' }] }, /unknown key 'datasets\[0\]\.root'/],
    ['a size for an unknown model', { ...base(), size: { vgg: 64 } }, /unknown key 'size\.vgg'/],
    ['a bad size', { ...base(), size: 4 }, /size must be an integer >= 8 and <= 4096, got 4/],
    ['a bad scope', { ...base(), scopes: ['local'] }, /scopes\[0\] must be one of global, layer, got "local"/],
    ['methods without imp', { ...base(), methods: ['oneshot'] }, /methods must include 'imp'/],
    ['an unknown train key', { ...base(), train: { epoch: 3 } }, /unknown key 'train\.epoch' \(known: epochs, batch, lr/],
    ['zero epochs', { ...base(), train: { epochs: 0 } }, /^cfg\.json: train\.epochs must be an integer >= 1, got 0$/],
    ['a string lr', { ...base(), train: { lr: '1e-4' } }, /train\.lr must be a number > 0, got "1e-4"/],
    ['a bad optimizer', { ...base(), train: { optimizer: 'rmsprop' } }, /train\.optimizer must be one of adam, adamw, sgd/],
    ['a bad schedule', { ...base(), train: { schedule: 'linear' } }, /train\.schedule 'linear' is not one of/],
    ['a bad rewind', { ...base(), imp: { rewind: 'epoch' } }, /imp\.rewind 'epoch' is not one of init, none/],
    ['a rate of 1', { ...base(), imp: { rate: 1 } }, /imp\.rate must be a number >= 0\.001 and <= 0\.999, got 1/],
    ['decreasing sparsities', { ...base(), imp: { sparsities: [0.5, 0.4] } }, /imp\.sparsities must increase/],
    ['one-shot beyond the IMP levels', { ...base(), imp: { levels: 3 }, oneshot: { sparsities: [0.9] } }, /oneshot\.sparsities\[0\] 0\.9 is not near any IMP level's sparsity \(nearest: level 3 at 48\.8%/],
    ['default one-shot points out of reach', { ...base(), imp: { levels: 3 } }, /oneshot\.sparsities \(default 0\.6, 0\.8\) 0\.6 is not near/],
    ['a one-shot level out of range', { ...base(), oneshot: { levels: [9] } }, /oneshot\.levels\[0\] must be an integer >= 1 and <= 8, got 9/],
    ['one-shot levels and sparsities', { ...base(), oneshot: { levels: [1], sparsities: [0.2] } }, /oneshot takes levels or sparsities, not both/],
    ['a one-shot section without the method', { ...base(), methods: ['imp'], oneshot: { levels: [1] } }, /oneshot is set but methods does not list 'oneshot'/],
    ['a bad control kind', { ...base(), controls: { kinds: ['shuffle'] } }, /controls\.kinds\[0\] must be one of reinit, random_prune/],
    ['bad control levels', { ...base(), controls: { levels: 'some' } }, /controls\.levels must be 'all', 'oneshot' or a list of levels, got "some"/],
    ['a non-boolean shareDense', { ...base(), shareDense: 'yes' }, /shareDense must be true or false/],
  ];
  for (const [what, raw, msg] of bad) {
    it(`refuses ${what} with a one-line error naming the key`, () => {
      const m = errorOf(raw);
      expect(m).toMatch(msg);
      expect(m).not.toContain('\n');
    });
  }

  it('names the file for unreadable and invalid JSON files', () => {
    const d = tmp('files');
    expect(() => readSweepConfig(path.join(d, 'none.json'))).toThrow(/none\.json: no such file/);
    fs.writeFileSync(path.join(d, 'bad.json'), '{"out": ');
    expect(() => readSweepConfig(path.join(d, 'bad.json'))).toThrow(/bad\.json: invalid JSON/);
    fs.writeFileSync(path.join(d, 'key.json'), JSON.stringify({ ...base(), train: { epochs: -1 } }));
    expect(() => readSweepConfig(path.join(d, 'key.json'))).toThrow(new RegExp(`^${path.join(d, 'key.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: train\\.epochs must be`));
  });

  it('control levels: the one-shot ones by default, all of them without one-shot, or explicit sparsities', () => {
    expect(parseSweepConfig({ ...base(), methods: ['imp', 'controls'], imp: { levels: 3 } }).controlLevels).toEqual([1, 2, 3]);
    expect(parseSweepConfig({ ...base(), controls: { levels: 'all' }, imp: { levels: 2 }, oneshot: { levels: [2] } }).controlLevels).toEqual([1, 2]);
    expect(parseSweepConfig({ ...base(), controls: { sparsities: [0.2, 0.5] } }).controlLevels).toEqual([1, 3]);
    expect(parseSweepConfig({ ...base(), methods: ['imp'] })).toMatchObject({ oneshotLevels: [], controlLevels: [], controlKinds: [] });
  });
});

describe('sweep plan', () => {
  it('the study: 3 models x 2 datasets x 2 scopes, with the dense level shared between scopes', () => {
    const plan = planSweep(readSweepConfig('examples/sweep-study.json'));
    expect(plan.runs).toHaveLength(12);
    expect(plan.runs.map((r) => path.basename(r.dir)).slice(0, 2)).toEqual(['meso4-openforensics-global', 'meso4-openforensics-layer']);
    const [g, l] = plan.runs;
    expect(g.denseFrom).toBeNull();
    expect(l.denseFrom).toBe(g.dir);
    expect(g.config).toMatchObject({ model: 'meso4', scope: 'global', levels: 8, rate: 0.2, rewind: 'init', size: 256 });
    expect(plan.runs.find((r) => r.dataset.name === 'ffpp')!.size).toBe(128);
    // per run: dense + 8 IMP + 2 one-shot + 2 kinds x 2 levels of controls = 15; the layer run copies its dense level
    expect(g.trainings).toHaveLength(15);
    expect(plan.trainings).toBe(6 * 15 + 6 * 14);
    expect(plan.finished).toBe(0);
    expect(plan.sparsities[4]).toBeCloseTo(1 - 0.8 ** 4, 12);
    expect(g.trainings.map((t) => path.relative(g.dir, t.dir))).toContain(path.join('controls', 'random_prune', 'level_7'));
    expect(g.trainings.map((t) => path.relative(g.dir, t.dir))).toContain(path.join('oneshot_global', 'level_4'));
  });

  it('counts finished levels from result.json, and trains dense twice without shareDense', () => {
    const out = tmp('plan');
    const cfg = parseSweepConfig({ ...base(), out, imp: { levels: 2 }, oneshot: { levels: [2] }, controls: { kinds: ['reinit'] } });
    let plan = planSweep(cfg);
    expect(plan.trainings).toBe(5 + 4);
    fs.mkdirSync(path.join(out, 'meso4-synthetic-global', 'level_0'), { recursive: true });
    fs.writeFileSync(path.join(out, 'meso4-synthetic-global', 'level_0', 'result.json'), '{}');
    plan = planSweep(cfg);
    expect(plan.finished).toBe(1);
    expect(planSweep({ ...cfg, shareDense: false }).trainings).toBe(10);
    expect(formatPlan(plan)).toMatch(/total: 9 trainings \(1 finished, 8 to run\), at most 80 epochs/);
  });
});

describe('ticketlab sweep', () => {
  const writes: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    writes.length = 0;
  });

  it('--dry-run prints the plan and touches nothing', async () => {
    vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (writes.push(String(s)), true));
    const out = path.join(tmp('dry'), 'study');
    expect(await sweepCommand.run(['examples/sweep-study.json', '--dry-run', '--out', out])).toBe(0);
    const text = writes.join('');
    expect(text).toContain('sweep: 12 runs into');
    expect(text).toContain(path.join(out, 'resnet18-ffpp-layer'));
    expect(text).toContain('one-shot: levels 4 (59.0%), 7 (79.0%)');
    expect(text).toContain('0.0% -> 20.0% -> 36.0% -> 48.8% -> 59.0% -> 67.2% -> 73.8% -> 79.0% -> 83.2%');
    expect(text).toMatch(/total: 174 trainings \(0 finished, 174 to run\)/);
    expect(text).toMatch(/warning: .*datasets\[0\]: data\/OpenForensics does not exist/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('one-line errors: no config, a bad flag, a bad key, a missing dataset root', async () => {
    await expect(sweepCommand.run([])).rejects.toThrow(/give exactly one config file \(got 0\)/);
    await expect(sweepCommand.run(['a.json', '--fast'])).rejects.toThrow(/^sweep: .*--fast.*; see 'ticketlab sweep --help'$/);
    const d = tmp('cli');
    fs.writeFileSync(path.join(d, 'c.json'), JSON.stringify({ ...base(), methods: ['imp', 'pruning'] }));
    await expect(sweepCommand.run([path.join(d, 'c.json'), '--dry-run'])).rejects.toThrow(/c\.json: methods\[1\] must be one of imp, oneshot, controls, got "pruning"$/);
    fs.writeFileSync(path.join(d, 'm.json'), JSON.stringify({ ...base(), out: path.join(d, 'o'), datasets: [path.join(d, 'missing')] }));
    await expect(sweepCommand.run([path.join(d, 'm.json')])).rejects.toThrow(/datasets\[0\]: .*missing does not exist/);
    expect(fs.existsSync(path.join(d, 'o'))).toBe(false);
  });

  it('--help documents every config key and flag', () => {
    for (const k of ['out', 'models', 'datasets', 'size', 'scopes', 'methods', 'train', 'imp', 'oneshot', 'controls', 'shareDense', '--dry-run', '--resume', '--out']) {
      expect(sweepCommand.help).toContain(k);
    }
  });
});

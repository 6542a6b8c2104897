// The kernel planner: choice (default rule, suits, formats), override (setter and TICKETLAB_KERNELS),
// pins over tuned choices, the tuning cache round trip, and a tuner that keeps the measured winner.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initDevice, device, type DeviceInfo } from '../../src/tensor/device.js';
import {
  adapterKey,
  clearPins,
  parseKernelOverride,
  pinKernels,
  plan,
  plannerRecord,
  plannerSeen,
  registerCandidates,
  registerFamily,
  resetPlannerRecord,
  setKernelOverride,
  setTunedChoices,
  type BenchCase,
} from '../../src/tensor/plan.js';
import { readTuneCache, tuneCachePath, tuneCacheDir, tuneSeen, useTuneCache, type TuneTimer } from '../../src/tensor/tune.js';
import { conv2dGeometry } from '../../src/tensor/index.js';

interface G {
  n: number;
}

let benchRuns = 0;
registerFamily<G>({
  family: 'test.fake',
  about: 'a fake family',
  shapeClass: (g) => `n${g.n}`,
  defaultRule: (g, _dev, cands) => cands.find((c) => c.variant === (g.n > 100 ? 'wide' : 'narrow')) ?? cands[0],
  bench: (): BenchCase => ({ run: () => void benchRuns++, dispose: () => undefined }),
});
registerCandidates<G>('test.fake', [
  { variant: 'narrow' },
  { variant: 'wide', tile: '64', params: { w: 64 } },
  { variant: 'wide', tile: '256', params: { w: 256 }, tags: ['big-gpu'], suits: (g) => g.n >= 256 },
  { variant: 'sparse', formats: ['sparse'] },
]);
registerFamily<G>({ family: 'test.fake.sub', about: 'prefix test', shapeClass: (g) => `${g.n}`, defaultRule: (_g, _d, c) => c[0] });
registerCandidates<G>('test.fake.sub', [{ variant: 'a' }, { variant: 'narrow' }]);

beforeAll(async () => {
  await initDevice();
});

afterEach(() => {
  setKernelOverride(null);
  delete process.env.TICKETLAB_KERNELS;
  clearPins();
  setTunedChoices({}, true);
});

describe('planner choice', () => {
  it('follows the static rule among suitable candidates, by format', () => {
    expect(plan<G>('test.fake', { n: 10 }).id).toBe('narrow');
    const p = plan<G>('test.fake', { n: 500 });
    expect([p.id, p.source, p.params]).toEqual(['wide:64', 'default', { w: 64 }]);
    expect(plan<G>('test.fake', { n: 500 }, { format: 'sparse' }).id).toBe('sparse');
    expect(() => plan<G>('test.fake', { n: 5 }, { dtype: 'i32' })).toThrow(/no test.fake kernel suits n5 \(i32, dense\)/);
    expect(() => plan('test.nothing', {})).toThrow(/no kernel family 'test.nothing'/);
  });

  it('override: setter and env, family prefix, tile, last entry wins, one-line errors', () => {
    setKernelOverride('test.fake.sub:a,test.fake:wide');
    expect(plan<G>('test.fake', { n: 10 }).id).toBe('wide:64');
    expect(plan<G>('test.fake.sub', { n: 10 }).id).toBe('a');
    // 'test.fake' also selects 'test.fake.sub' (prefix before a dot), unless named exactly.
    setKernelOverride('test.fake:narrow');
    expect(plan<G>('test.fake.sub', { n: 10 }).id).toBe('narrow');
    expect(plan<G>('test.fake', { n: 500 }).id).toBe('narrow');
    setKernelOverride('test.fake:wide:256');
    expect(() => plan<G>('test.fake', { n: 10 })).toThrow(/does not suit/);
    expect(plan<G>('test.fake', { n: 300 }).source).toBe('override');
    setKernelOverride(null);
    process.env.TICKETLAB_KERNELS = 'test.fake:wide,test.fake:narrow';
    expect(plan<G>('test.fake', { n: 500 }).id).toBe('narrow');
    process.env.TICKETLAB_KERNELS = 'test.fake:bogus';
    expect(() => plan<G>('test.fake', { n: 500 })).toThrow(/test.fake has no variant 'bogus'/);
    expect(() => parseKernelOverride('conv')).toThrow(/'conv' should be family:variant/);
    expect(() => setKernelOverride('a:b:c:d')).toThrow(/kernel override/);
  });

  it('pins beat tuned choices, tuned choices beat the default; the record lists what was used', () => {
    resetPlannerRecord();
    const key = plan<G>('test.fake', { n: 7 }).key;
    setTunedChoices({ [key]: 'wide:64' });
    expect(plan<G>('test.fake', { n: 7 })).toMatchObject({ id: 'wide:64', source: 'tuned' });
    pinKernels({ [key]: 'narrow' });
    expect(plan<G>('test.fake', { n: 7 })).toMatchObject({ id: 'narrow', source: 'pinned' });
    // An unknown or unsuitable pinned id falls through to the next rule.
    pinKernels({ [key]: 'wide:256' });
    expect(plan<G>('test.fake', { n: 7 }).source).toBe('tuned');
    expect(plannerRecord()[key]).toBe('wide:64');
    expect(plannerSeen().some((s) => s.family === 'test.fake' && s.shapeClass === 'n7')).toBe(true);
  });

  it('real families: static rules by device kind, and the conv override reaches all three passes', () => {
    const g = conv2dGeometry([2, 3, 8, 8], [8, 3, 3, 3], { padding: 1 });
    const soft = device().info.isSoftware;
    // Software: row strips for stride-1 layers with rows of whole vec4s, except the weight gradient of an
    // RGB layer (3 x 3 channel-row pairs) of more than 4 filters; direct blocks elsewhere (here: a 7-wide input).
    const want = soft ? { 'conv.fwd': 'strip', 'conv.dgrad': 'strip', 'conv.wgrad': 'direct' } : { 'conv.fwd': 'tiled', 'conv.dgrad': 'tiled', 'conv.wgrad': 'tiled' };
    for (const f of ['conv.fwd', 'conv.dgrad', 'conv.wgrad'] as const) expect(plan(f, g).variant).toBe(want[f]);
    const odd = conv2dGeometry([2, 16, 7, 7], [4, 16, 3, 3], { padding: 1 });
    for (const f of ['conv.fwd', 'conv.dgrad', 'conv.wgrad']) expect(plan(f, odd).variant).toBe(soft ? 'direct' : 'tiled');
    expect(plan('matmul', { batch: 1, M: 8, N: 8, K: 8, transA: false, transB: false }).variant).toBe(soft ? 'register' : 'shared');
    setKernelOverride('conv:tiled');
    for (const f of ['conv.fwd', 'conv.dgrad', 'conv.wgrad']) expect(plan(f, g).id).toBe('tiled:64x8');
  });
});

describe('tuning cache', () => {
  function tempCache(): string {
    return fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-tune-'));
  }

  it('lives under $XDG_CACHE_HOME/ticketlab (else ~/.cache/ticketlab), one file per adapter and driver', () => {
    expect(tuneCacheDir({ XDG_CACHE_HOME: '/x/y' })).toBe('/x/y/ticketlab');
    expect(tuneCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'ticketlab'));
    const info = device().info;
    const other: DeviceInfo = { ...info, description: `${info.description} (another driver)` };
    expect(adapterKey(other)).not.toBe(adapterKey(info));
    expect(adapterKey(info)).toBe(adapterKey({ ...info }));
    expect(path.basename(tuneCachePath(info, '/c'))).toMatch(/^kernels-[a-z0-9-]+\.json$/);
  });

  it('the tuner keeps the measured winner, writes the cache atomically, and a fresh process reads it back', async () => {
    const dir = tempCache();
    const file = path.join(dir, 'kernels-test.json');
    // Fake timer: a deterministic cost per candidate, no speed measured.
    const cost: Record<string, number> = { narrow: 3, 'wide:64': 1, 'wide:256': 2 };
    const timed: string[] = [];
    const timer: TuneTimer = async (run, reps, what) => {
      for (let i = 0; i < reps; i++) run();
      timed.push(what.id);
      return cost[what.id];
    };
    resetPlannerRecord();
    plan<G>('test.fake', { n: 10 });
    plan<G>('test.fake', { n: 300 });
    const seen = plannerSeen().filter((s) => s.family === 'test.fake');
    benchRuns = 0;
    const r = await tuneSeen(seen, { timer, file, maxCandidates: 3, includeBig: true, reps: 2, slowFactor: 1e9 });
    // n10: narrow and wide:64 (wide:256 does not suit); n300: all three.
    expect(Object.values(r.tuned).map((e) => e.choice)).toEqual(['wide:64', 'wide:64']);
    expect(timed.sort()).toEqual(['narrow', 'narrow', 'wide:256', 'wide:64', 'wide:64']);
    expect(benchRuns).toBe(5 * 3); // one warm-up + 2 timed runs per candidate
    expect(plan<G>('test.fake', { n: 10 })).toMatchObject({ id: 'wide:64', source: 'tuned' });
    // Atomic write: the file is complete JSON and no temp file is left beside it.
    expect(fs.readdirSync(dir)).toEqual(['kernels-test.json']);
    const back = readTuneCache(file);
    expect(back.entries['test.fake|f32|dense|n300']).toMatchObject({ choice: 'wide:64', ms: { narrow: 3, 'wide:64': 1, 'wide:256': 2 } });
    // Reloaded from the file into a clean planner.
    setTunedChoices({}, true);
    expect(plan<G>('test.fake', { n: 300 }).source).toBe('default');
    expect(useTuneCache(file)).toBe(2);
    expect(plan<G>('test.fake', { n: 300 })).toMatchObject({ id: 'wide:64', source: 'tuned' });
    // A second tune finds both keys cached and times nothing.
    timed.length = 0;
    const again = await tuneSeen(seen, { timer, file });
    expect([again.cached, timed.length]).toEqual([2, 0]);
    fs.writeFileSync(file, '{not json');
    expect(() => readTuneCache(file)).toThrow(/tuning cache .*kernels-test.json: not valid JSON/);
  });

  it('bounds: big-GPU configurations are left out on software adapters unless asked; budget skips keys', async () => {
    const dir = tempCache();
    const file = path.join(dir, 'k.json');
    const timed: string[] = [];
    const timer: TuneTimer = async (_run, _reps, what) => {
      timed.push(what.id);
      return 1;
    };
    resetPlannerRecord();
    plan<G>('test.fake', { n: 300 });
    const seen = plannerSeen().filter((s) => s.family === 'test.fake');
    await tuneSeen(seen, { timer, file, includeBig: false, maxCandidates: 8 });
    expect(timed).not.toContain('wide:256');
    const r = await tuneSeen(seen, { timer, file, force: true, budgetS: -1 });
    expect(r.skipped).toEqual(['test.fake|f32|dense|n300']);
  });
});

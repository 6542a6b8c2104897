// Fuzz: run folders damaged between runs (truncated, bit-flipped, deleted or replaced files, a doctored
// checkpoint state, hand-edited result.json). Resuming an unfinished level, or re-running a finished one,
// either works or fails with one line naming the culprit, and a failure changes no file in the folder.
// Each case may train, so the default count is small; `npm run fuzz:long` runs more.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDataset, type DatasetSplits } from '../../src/data/datasets.js';
import { createModel } from '../../src/nn/models/index.js';
import { DEFAULT_TRAIN, Interrupted, fit, type TrainSettings } from '../../src/train/trainer.js';
import { loadSafetensors, saveSafetensors } from '../../src/io/safetensors.js';
import { parseExact, stringifyExact } from '../../src/util/exact-json.js';
import { RUN_FILES } from '../../src/io/run-paths.js';
import { saveModelOnce } from '../../src/nn/checkpoint.js';
import { expectOneLineError, fuzzRuns, fuzzSeed, snapshot, withinMs, fuzzTimeout } from './fuzz-util.js';

const settings: TrainSettings = { ...DEFAULT_TRAIN, epochs: 2, batch: 16, lr: 1e-3, patience: 0, seed: 2 };
let data: DatasetSplits;
const top = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-run-'));
const unfinished = path.join(top, 'unfinished');
const finished = path.join(top, 'finished');

async function train(dir: string, o: { stopAt?: number; resume?: boolean } = {}) {
  const model = createModel('meso4', { size: 32, seed: 2 });
  const signal = { stop: false };
  try {
    return await fit({
      model, train: data.train, val: data.val, test: data.test, settings, dir, resume: o.resume, signal, log: () => undefined,
      captures: [
        { kind: 'step', at: 0, capture: (m) => saveModelOnce(path.join(dir, RUN_FILES.init), m) },
        ...(o.stopAt ? [{ kind: 'step' as const, at: o.stopAt, capture: async () => void (signal.stop = true) }] : []),
      ],
    });
  } finally {
    model.dispose();
  }
}

beforeAll(async () => {
  data = await openDataset('synthetic:train=32,val=8,test=8', { size: 32, seed: 0 });
  await expect(train(unfinished, { stopAt: 3 })).rejects.toBeInstanceOf(Interrupted);
  await train(finished);
});

afterAll(() => fs.rmSync(top, { recursive: true, force: true }));

type Damage =
  | { kind: 'truncate'; file: string; at: number }
  | { kind: 'flip'; file: string; flips: [number, number][] }
  | { kind: 'delete' | 'empty' | 'folder'; file: string }
  | { kind: 'state'; field: string; value: unknown }
  | { kind: 'json'; file: string; value: unknown };

function apply(dir: string, d: Damage): Promise<void> | void {
  if (d.kind === 'state') return doctorState(dir, d.field, d.value);
  const f = path.join(dir, d.file);
  if (!fs.existsSync(f)) return;
  if (d.kind === 'truncate') fs.truncateSync(f, Math.floor(fs.statSync(f).size * d.at));
  else if (d.kind === 'flip') {
    const b = fs.readFileSync(f);
    for (const [i, v] of d.flips) if (b.length) b[i % Math.min(b.length, 4096)] = v;
    fs.writeFileSync(f, b);
  } else if (d.kind === 'delete') fs.rmSync(f);
  else if (d.kind === 'empty') fs.writeFileSync(f, '');
  else if (d.kind === 'folder') {
    fs.rmSync(f);
    fs.mkdirSync(f);
  } else if (d.kind === 'json') fs.writeFileSync(f, JSON.stringify(d.value));
}

async function doctorState(dir: string, field: string, value: unknown): Promise<void> {
  const ck = path.join(dir, RUN_FILES.checkpoint);
  if (!fs.existsSync(ck)) return;
  const { tensors, metadata } = await loadSafetensors(ck);
  const st = parseExact(metadata.state) as Record<string, unknown>;
  if (value === undefined) delete st[field];
  else st[field] = value;
  await saveSafetensors(ck, tensors, { ...metadata, state: stringifyExact(st) });
}

const FILES = [RUN_FILES.checkpoint, RUN_FILES.best, RUN_FILES.init, RUN_FILES.metrics, RUN_FILES.result, RUN_FILES.final];
const damage: fc.Arbitrary<Damage> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), file: fc.constantFrom(...FILES), at: fc.double({ min: 0, max: 0.999, noNaN: true }) }),
  fc.record({ kind: fc.constant('flip' as const), file: fc.constantFrom(...FILES), flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }) }),
  fc.record({ kind: fc.constantFrom('delete' as const, 'empty' as const, 'folder' as const), file: fc.constantFrom(...FILES) }),
  fc.record({
    kind: fc.constant('state' as const),
    field: fc.constantFrom('epoch', 'batch', 'step', 'bestValLoss', 'bestEpoch', 'badEpochs', 'dropoutDrawn', 'optimizerStep', 'seconds'),
    value: fc.oneof(fc.constantFrom(undefined, null, -5, -1, 0, 1, 2, 3, 99, 1.5, 'x', [], {}, Infinity, NaN), fc.jsonValue({ maxDepth: 1 })),
  }),
  fc.record({ kind: fc.constant('json' as const), file: fc.constant(RUN_FILES.result), value: fc.jsonValue({ maxDepth: 2 }) }),
);

describe('fuzz: run folders damaged between runs', () => {
  it('resume / re-run works or fails in one line, and a failure changes nothing', async () => {
    let n = 0;
    let failed = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(unfinished, finished), damage, async (template, d) => {
        const dir = path.join(top, `case${n++}`);
        fs.cpSync(template, dir, { recursive: true });
        await apply(dir, d);
        const before = snapshot(dir);
        try {
          await withinMs(60_000, 'resume', train(dir, { resume: true }));
        } catch (e) {
          failed++;
          expectOneLineError(e, JSON.stringify(d));
          expect(snapshot(dir), `${JSON.stringify(d)} failed with '${(e as Error).message}' and changed the folder`).toEqual(before);
        }
        fs.rmSync(dir, { recursive: true, force: true });
      }),
      {
        numRuns: fuzzRuns(16, 20),
        seed: fuzzSeed,
        examples: [
          [unfinished, { kind: 'state', field: 'epoch', value: -5 }],
          [unfinished, { kind: 'truncate', file: RUN_FILES.checkpoint, at: 0.5 }],
          [finished, { kind: 'json', file: RUN_FILES.result, value: { epochs: 1 } }],
        ],
      },
    );
    expect(failed).toBeGreaterThan(0);
  }, fuzzTimeout);
});

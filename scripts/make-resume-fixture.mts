// npx tsx scripts/make-resume-fixture.mts SRC_ROOT OUT: the run folders of tests/fixtures/resume/, made
// with the code of the checkout at SRC_ROOT (so a fixture records what an older version wrote). For each
// kernel mode (dense, sparse, auto) a small IMP run (meso4 at 32 px, 2 levels of 2 epochs) is
// interrupted in level 1 and kept as OUT/<mode>/interrupted; a copy resumed by the same code gives
// OUT/<mode>/expected.json: the sha256 of every level's final weights, and the metrics without timings.
// tests/train/resume-fixture.test.ts resumes the interrupted folders with today's code and compares.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FIXTURE_CONFIG, FIXTURE_MODES, sha256, untimedMetrics } from './resume-fixture-config.ts';

const [root, out] = process.argv.slice(2).map((p) => path.resolve(p));
if (!out) {
  process.stderr.write('usage: npx tsx scripts/make-resume-fixture.mts SRC_ROOT OUT\n');
  process.exit(2);
}
const { openDataset } = await import(`${root}/src/data/datasets.ts`);
const { runImp } = await import(`${root}/src/prune/imp.ts`);
const sparse = await import(`${root}/src/nn/sparse.ts`);
const { closeDevice, initDevice } = await import(`${root}/src/tensor/device.ts`);
await initDevice();

const data = await openDataset(FIXTURE_CONFIG.data, { size: FIXTURE_CONFIG.size, seed: 0 });
for (const mode of FIXTURE_MODES) {
  sparse.setKernelMode(mode);
  const dir = path.join(out, mode);
  fs.rmSync(dir, { recursive: true, force: true });
  const run = path.join(dir, 'interrupted');
  const signal = { stop: false };
  // The stop is honoured after a training step: asked for on level 1's first line, it lands after the
  // level's first step, inside its first epoch.
  const log = (m: string) => {
    if (m.startsWith('level 1')) signal.stop = true;
  };
  await runImp(FIXTURE_CONFIG, { run, data, resume: false, progress: false, signal, log }).then(
    () => {
      throw new Error(`${mode}: the run finished; the stop came too late`);
    },
    (e: Error) => {
      if (!/interrupted/.test(e.message)) throw e;
    },
  );
  const resumed = path.join(dir, 'resumed');
  fs.cpSync(run, resumed, { recursive: true });
  await runImp(FIXTURE_CONFIG, { run: resumed, data, resume: true, progress: false, log: () => undefined });
  const expected: Record<string, unknown> = {};
  for (const k of [0, 1]) {
    const lv = path.join(resumed, `level_${k}`);
    expected[`level_${k}`] = { final: sha256(path.join(lv, 'final.safetensors')), metrics: untimedMetrics(path.join(lv, 'metrics.jsonl')) };
  }
  fs.writeFileSync(path.join(dir, 'expected.json'), JSON.stringify(expected, null, 1) + '\n');
  fs.rmSync(resumed, { recursive: true });
  process.stdout.write(`${mode}: ${run}\n`);
}
sparse.setKernelMode('dense');
closeDevice();

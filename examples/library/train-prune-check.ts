// ticketlab as a library: train a tiny Meso-4 on synthetic deepfakes, prune 20% of its weights by
// magnitude (one IMP level, rewinding to the initial weights), retrain, then verify the run's mask
// invariants. Build with tsc and run with plain Node:
//
//   npx tsc -p . && node out/train-prune-check.js [RUN_DIR]
//
// Exit status 0 when every invariant holds.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { closeDevice, initDevice, openRun } from 'ticketlab';
import { openDataset } from 'ticketlab/data';
import { checkRun, formatRunCheck, runImp, type ImpConfig } from 'ticketlab/prune';

const run = process.argv[2] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-example-'));

const config: ImpConfig = {
  model: 'meso4',
  data: 'synthetic:train=32,val=16,test=16',
  size: 32,
  train: { epochs: 1, batch: 16, lr: 1e-3, optimizer: 'adam', momentum: 0.9, weightDecay: 0, schedule: 'constant', warmupSteps: 0, patience: 0, seed: 0, flip: true },
  levels: 1,
  rate: 0.2,
  sparsities: null,
  scope: 'global',
  rewind: 'init',
  pruneLast: false,
};

const device = await initDevice();
console.log(`adapter: ${device.info.description || device.info.vendor}`);
try {
  const data = await openDataset(config.data, { size: config.size, seed: 0 });
  // config.json makes the folder a run that `ticketlab check` / `report` understand.
  await openRun(run, { command: 'imp', ...config }, { resume: false });
  const imp = await runImp(config, { run, data, resume: false, progress: false, log: (m) => console.log(m) });
  for (const { level, result } of imp.levels) {
    console.log(`level ${level}: ${(result.sparsity.sparsity * 100).toFixed(1)}% pruned, test accuracy ${result.test?.accuracy ?? 'n/a'}`);
  }
  const check = await checkRun(run);
  console.log(formatRunCheck(check));
  process.exitCode = check.ok ? 0 : 1;
} finally {
  closeDevice();
}

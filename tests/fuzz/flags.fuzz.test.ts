// Fuzz: flag strings for `train` and `imp`. Everything they check before touching the run folder
// (prepareTrain / prepareImp, then the model check) either accepts the flags or fails with one line
// naming the culprit, and never creates --out; a few bad command lines through the real CLI process
// exit 1 with one line on stderr, no stack trace, and leave no folder.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { prepareImp } from '../../src/cli/imp.js';
import { prepareTrain } from '../../src/cli/train.js';
import { checkModel } from '../../src/cli/prepare.js';
import { expectOneLineError, fuzzRuns, fuzzSeed, withinMs, fuzzTimeout } from './fuzz-util.js';
import { budget } from '../budget.js';

const FLAGS = [
  'model', 'data', 'size', 'batch', 'epochs', 'lr', 'optimizer', 'momentum', 'weight-decay', 'schedule', 'warmup', 'patience', 'seed',
  'levels', 'rate', 'sparsities', 'scope', 'rewind', 'oneshot', 'controls', 'control-levels', 'bogus',
];
const BOOL_FLAGS = ['no-flip', 'resume', 'quiet', 'prune-last'];
const VALUES = fc.oneof(
  fc.constantFrom(
    '-1', '-0.5', '0', '1', '2', '8', '31', '33', '1e300', '-1e300', '1e-300', 'NaN', 'Infinity', '-Infinity', '', ' ', '0x10', '1,2', '3,1',
    'all', 'meso4', 'cnn5', 'resnet18', 'adam', 'sgd', 'cosine', 'step:10:0.1', 'step:0', 'init', 'none', 'epoch:1', 'epoch:99', 'step:99999',
    'epoch:-1', 'global', 'layer', 'reinit', 'random_prune', 'reinit,bogus', '0.2,0.5', '0.5,0.2', '1.5',
    'synthetic:train=8,val=4,test=4', 'synthetic:train=1e12', 'synthetic:train=0', 'synthetic:train=1', 'synthetic:val=0', 'synthetic:difficulty=-1',
    'synthetic:bogus=1', 'synthetic:train=8,val=4,test=4,seed=-1', '/nonexistent', '/proc', '--', '-',
  ),
  fc.string({ maxLength: 12 }),
);
const ARG = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...FLAGS), VALUES, fc.boolean()).map(([f, v, eq]) => (eq ? [`--${f}=${v}`] : [`--${f}`, v])) },
  { weight: 1, arbitrary: fc.constantFrom(...BOOL_FLAGS).map((f) => [`--${f}`]) },
  { weight: 1, arbitrary: VALUES.map((v) => [v]) },
);

describe('fuzz: flag strings', () => {
  it('train and imp accept the flags or fail in one line, and never create --out', async () => {
    const top = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-flags-'));
    let accepted = 0;
    let refused = 0;
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('train', 'imp'), fc.array(ARG, { maxLength: 7 }), async (cmd, parts) => {
        const out = path.join(top, `run${n++}`);
        // Small data by default so accepted flag sets open quickly; the fuzzed --data comes after and wins.
        const args = ['--data', 'synthetic:train=8,val=4,test=4', '--size', '32', ...parts.flat(), '--out', out];
        try {
          const p = cmd === 'train' ? await withinMs(20_000, cmd, prepareTrain(args)) : await withinMs(20_000, cmd, prepareImp(args));
          checkModel(cmd === 'train' ? (p as Awaited<ReturnType<typeof prepareTrain>>).spec : (p as Awaited<ReturnType<typeof prepareImp>>).cfg);
          accepted++;
        } catch (e) {
          expectOneLineError(e, args.join(' '));
          refused++;
        }
        expect(fs.existsSync(out), `${cmd} ${args.join(' ')} created --out`).toBe(false);
      }),
      { numRuns: fuzzRuns(200), seed: fuzzSeed },
    );
    expect(accepted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    fs.rmSync(top, { recursive: true, force: true });
  }, fuzzTimeout);

  it('the CLI process: bad flags exit 1 with one line on stderr and leave no folder', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-cli-'));
    const bin = path.resolve('bin/ticketlab.mjs');
    for (const args of [
      ['imp', '--lr', '-1', '--out', 'a'],
      ['train', '--data', 'synthetic:train=1e12', '--out', 'b'],
      ['imp', '--rewind', 'epoch:99', '--epochs', '2', '--out', 'c'],
      ['train', '--out', '/proc/x'],
    ]) {
      // Asynchronous: a synchronous child blocks the worker's event loop, and vitest's RPC calls time
      // out ("Timeout calling onTaskUpdate") when the children of one test take over a minute together.
      const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', timeout: budget(60_000), env: { ...process.env, TICKETLAB_DEBUG: '' } }, (err, _stdout, stderr) =>
          resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
        );
      });
      expect(r.status, args.join(' ')).toBe(1);
      const lines = r.stderr.split('\n').filter((l) => l.trim() && !/^Warning: /.test(l));
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(lines[0]).toMatch(/^ticketlab: /);
      expectOneLineError(new Error(lines[0].replace(/^ticketlab: /, '')));
    }
    expect(fs.readdirSync(cwd)).toEqual([]);
    fs.rmSync(cwd, { recursive: true, force: true });
  }, fuzzTimeout);
});

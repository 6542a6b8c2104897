// GPU limits before a run folder exists (issue 20): a step too large for the device is refused in one
// line naming --size, --batch and the limit, and nothing is written; the estimate behind it (buffer
// requests linear in the batch) is checked against a measured step.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { closeDevice, device, initDevice } from '../../src/tensor/device.js';
import { sizeClass } from '../../src/tensor/pool.js';
import { extrapolate, largestBinding, probeStepBuffers, stepRequests } from '../../src/train/limits.js';

const ROOT = path.resolve(__dirname, '..', '..');
let tmp: string;
beforeAll(async () => {
  await initDevice();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-limits-'));
});
afterAll(() => {
  closeDevice();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'bin', 'ticketlab.mjs'), ...args], { cwd: ROOT, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

describe('one step\'s buffers', () => {
  it('grow linearly with the batch: batches 2 and 3 predict the largest binding at batches 4, 7 and 16', async () => {
    for (const model of ['meso4', 'cnn5'] as const) {
      const p = await probeStepBuffers(model, 32);
      const measured = await stepRequests(model, 32, [4, 7, 16]);
      for (const [i, b] of [4, 7, 16].entries()) {
        expect(largestBinding(p, b), `${model} batch ${b}`).toBe(Math.max(...measured[i].map(sizeClass)));
        // The largest request itself, not only its size class.
        expect(Math.max(...extrapolate(p, b)), `${model} batch ${b}`).toBe(Math.max(...measured[i]));
      }
    }
  });
});

describe('train refuses a step over the GPU limit', () => {
  it('--size 1024 --batch 32: one line naming both flags and the limit, and no run folder', async () => {
    const limit = device().limits.maxStorageBufferBindingSize;
    // Meso-4's first activation alone is 32 x 8 x 1024^2 floats = 1 GiB: over the limit of any GPU we meet.
    expect(limit).toBeLessThan(2 ** 30);
    const out = path.join(tmp, 'big');
    const r = await cli('train', '--model', 'meso4', '--data', 'synthetic:train=4,val=2,test=2', '--size', '1024', '--batch', '32', '--epochs', '1', '--out', out, '--quiet');
    expect(r.status, r.stderr).toBe(1);
    const lines = r.stderr.trim().split('\n').filter((l) => !/^(Warning|device):/.test(l));
    expect(lines.length, r.stderr).toBe(1);
    expect(lines[0]).toMatch(/--size 1024 with --batch 32 needs a [\d.]+ MiB GPU buffer for one meso4 training step, over this GPU's (maxStorageBufferBindingSize|maxBufferSize) of [\d.]+ MiB; (use --batch \d+ or less|even --batch 1)/);
    expect(r.stderr).not.toMatch(/Binding size|validation/i);
    expect(fs.existsSync(out)).toBe(false);
  });
});

// `ticketlab profile --json`: one object per line with exactly the documented fields; bad flags fail
// with one line naming the flag.
import { describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROFILE_JSON_FIELDS, profileCommand } from '../../src/cli/profile.js';
import { writePng } from '../../src/data/image.js';

/** The JSON rows `ticketlab profile ARGS --json` prints (meso4, 32 px, batch 2, one step). */
async function jsonRows(extra: string[]): Promise<Record<string, unknown>[]> {
  const out: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out.push(String(chunk));
    return true;
  });
  try {
    expect(await profileCommand.run(['--model', 'meso4', '--size', '32', '--batch', '2', '--steps', '1', '--json', ...extra])).toBe(0);
  } finally {
    spy.mockRestore();
  }
  return out.join('').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('ticketlab profile', () => {
  it('--json prints one object per row with exactly the documented fields', async () => {
    const rows = await jsonRows([]);
    expect(rows.length).toBeGreaterThan(10);
    for (const r of rows) expect(Object.keys(r)).toEqual([...PROFILE_JSON_FIELDS]);
    const conv2 = rows.filter((r) => r.layer === 'conv2');
    // The optimizer updates every parameter in one multi-tensor dispatch, booked to the model's row.
    expect(new Set(conv2.map((r) => r.phase))).toEqual(new Set(['forward', 'input-grad', 'weight-grad']));
    const opt = rows.filter((r) => r.phase === 'optimizer');
    expect(opt.length).toBeGreaterThan(0);
    expect(opt.every((r) => r.layer === '(model)' && String(r.variant).includes('+multi'))).toBe(true);
    expect(conv2.every((r) => r.density === 1)).toBe(true);
  });

  it('--count --json gives the same fields with dispatches and bytes, and no time', async () => {
    const rows = (await jsonRows(['--count'])) as Record<string, number>[];
    for (const r of rows) expect(Object.keys(r)).toEqual([...PROFILE_JSON_FIELDS]);
    expect(rows.every((r) => r.ms === 0 && r.dispatches >= 1 && r.bytesRead + r.bytesWritten > 0)).toBe(true);
  });

  it('--data trains steps on the loader and reports the share of the step spent waiting for data', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-profile-data-'));
    const out: string[] = [];
    try {
      for (const cls of ['real', 'fake']) {
        for (let i = 0; i < 6; i++) await writePng(path.join(root, 'train', cls, `f_${i}.png`), { width: 40, height: 40, channels: 3, data: new Uint8Array(4800).fill(30 * i + (cls === 'fake' ? 9 : 0)) });
      }
      const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
        out.push(String(chunk));
        return true;
      });
      try {
        expect(await profileCommand.run(['--model', 'meso4', '--size', '32', '--batch', '4', '--steps', '1', '--json', '--data', root, '--data-steps', '3', '--no-cache'])).toBe(0);
      } finally {
        spy.mockRestore();
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
    const last = JSON.parse(out.join('').trim().split('\n').pop() as string) as { dataWaitShare: number; stepMs: number; steps: number };
    expect(last.steps).toBe(3);
    expect(last.stepMs).toBeGreaterThan(0);
    expect(last.dataWaitShare).toBeGreaterThanOrEqual(0);
    expect(last.dataWaitShare).toBeLessThan(1);
  });

  it('rejects bad flags in one line', async () => {
    await expect(profileCommand.run(['--kernels', 'fast'])).rejects.toThrow(/--kernels 'fast' is not one of dense, sparse, auto/);
    await expect(profileCommand.run(['--level', '2'])).rejects.toThrow(/--level needs --run/);
    await expect(profileCommand.run(['--run', '/nonexistent/run'])).rejects.toThrow(/not a run folder/);
  });
});

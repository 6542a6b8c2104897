// Inputs that were silently accepted (issue 20): an unknown kernel family in TICKETLAB_KERNELS, tuning
// cache entries naming kernels that no longer exist, and a file symlink from fake/ to an image in real/.
// (result.json's bounds are in tests/report/run-report.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '../../src/cli/commands.js'; // registers every kernel family, as the CLI does
import { openDataset } from '../../src/data/datasets.js';
import { writePng } from '../../src/data/image.js';
import { checkKernelFamilies, staleTuneKeys } from '../../src/tensor/kernel-checks.js';
import { candidatesOf, planFamilies, tunedChoices, setTunedChoices } from '../../src/tensor/plan.js';
import { TUNE_CACHE_VERSION, useTuneCache } from '../../src/tensor/tune.js';
import { device } from '../../src/tensor/device.js';

const ROOT = path.resolve(__dirname, '..', '..');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-hostile-inputs-'));
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('TICKETLAB_KERNELS', () => {
  it('accepts registered families and their prefixes, refuses an unknown family in one line', () => {
    expect(() => checkKernelFamilies('conv:direct,conv.fwd:strip,pruned:sparse,matmul:shared:64x64')).not.toThrow();
    expect(() => checkKernelFamilies('')).not.toThrow();
    expect(() => checkKernelFamilies('conv:direct,convv:direct')).toThrow(/^TICKETLAB_KERNELS: 'convv:direct' names no kernel family 'convv' \(families: .*conv.*\)$/);
    expect(() => checkKernelFamilies('conv.fw:direct')).toThrow(/names no kernel family 'conv\.fw'/);
    for (const f of planFamilies()) expect(() => checkKernelFamilies(`${f}:x`)).not.toThrow();
  });

  it('the CLI refuses an unknown family before the command runs', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(process.execPath, [path.join(ROOT, 'bin', 'ticketlab.mjs'), 'info'], { cwd: ROOT, env: { ...process.env, TICKETLAB_KERNELS: 'nosuch:direct' } }, (err, _o, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
      ),
    );
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').filter((l) => !l.startsWith('Warning:'))).toEqual([expect.stringMatching(/^ticketlab: TICKETLAB_KERNELS: 'nosuch:direct' names no kernel family 'nosuch'/)]);
  });
});

describe('the tuning cache', () => {
  it('reports entries naming kernels that no longer exist, once, and leaves them to the static rules', () => {
    const real = candidatesOf('conv.fwd')[0].id;
    const entries = {
      'conv.fwd|f32|dense|a': { choice: real, ms: {}, at: '' },
      'conv.fwd|f32|dense|b': { choice: 'strip:99x99x99', ms: {}, at: '' },
      'gone.family|f32|dense|c': { choice: 'direct', ms: {}, at: '' },
    };
    expect(staleTuneKeys(entries)).toEqual(['conv.fwd|f32|dense|b', 'gone.family|f32|dense|c']);
    const file = path.join(tmp, 'kernels-test.json');
    fs.writeFileSync(file, JSON.stringify({ version: TUNE_CACHE_VERSION, adapter: { ...device().info }, entries }));
    const saved = tunedChoices();
    try {
      const warned: string[] = [];
      expect(useTuneCache(file, (m) => warned.push(m))).toBe(3);
      expect(useTuneCache(file, (m) => warned.push(m))).toBe(3);
      expect(warned).toEqual([
        `tuning cache ${file}: 2 entries name kernels that no longer exist (e.g. conv.fwd|f32|dense|b: 'strip:99x99x99'); those shapes use the static rules; run 'ticketlab tune' to time them again`,
      ]);
    } finally {
      setTunedChoices(saved, true);
    }
  });
});

describe('image folders', () => {
  it('refuse a file symlink from fake/ to an image in real/, naming the link', async () => {
    const root = path.join(tmp, 'links');
    const img = { width: 8, height: 8, channels: 3 as const, data: new Uint8Array(8 * 8 * 3).fill(100) };
    for (const split of ['train', 'val', 'test']) {
      await writePng(path.join(root, split, 'real', 'a.png'), img);
      await writePng(path.join(root, split, 'fake', 'b.png'), img);
    }
    // A link within one class is fine.
    fs.symlinkSync(path.join(root, 'train', 'real', 'a.png'), path.join(root, 'train', 'real', 'a2.png'));
    await expect(openDataset(root, { size: 8, warn: () => {} })).resolves.toBeTruthy();
    const link = path.join(root, 'train', 'fake', 'c.png');
    fs.symlinkSync('../real/a.png', link);
    await expect(openDataset(root, { size: 8, warn: () => {} })).rejects.toThrow(
      new RegExp(`^${link.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is a link to .*train/real/a\\.png, an image under a real folder: one image would be both fake and real; remove the link$`),
    );
  });
});

import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  readJson,
  readJsonSync,
  writeFileAtomic,
  writeFileAtomicSync,
  writeJsonAtomic,
  writeJsonAtomicSync,
} from '../../src/io/atomic.js';
import { budget } from '../budget.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-atomic-'));
}

describe('writeFileAtomic', () => {
  it('creates parent folders, writes bytes and strings, leaves no temp file', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a', 'b', 'out.bin');
    await writeFileAtomic(file, Uint8Array.from([1, 2, 3]));
    expect([...fs.readFileSync(file)]).toEqual([1, 2, 3]);
    await writeFileAtomic(file, 'héllo');
    expect(fs.readFileSync(file, 'utf8')).toBe('héllo');
    writeFileAtomicSync(file, 'sync');
    expect(fs.readFileSync(file, 'utf8')).toBe('sync');
    expect(fs.readdirSync(path.dirname(file))).toEqual(['out.bin']);
  });

  it('on failure throws, removes its temp file and leaves the target alone', async () => {
    const dir = tmpDir();
    // rename(file over a non-empty directory) fails, after the temp file was fully written.
    const target = path.join(dir, 'target');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep'), 'x');
    await expect(writeFileAtomic(target, 'data')).rejects.toThrow();
    expect(() => writeFileAtomicSync(target, 'data')).toThrow();
    expect(fs.readdirSync(dir)).toEqual(['target']);
    expect(fs.readFileSync(path.join(target, 'keep'), 'utf8')).toBe('x');
  });

  it('concurrent writers to one target never produce a mixed file', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'f.txt');
    const payloads = ['a', 'b', 'c', 'd', 'e', 'f'].map((c) => c.repeat(200_000));
    await Promise.all(payloads.map((p) => writeFileAtomic(file, p)));
    expect(payloads).toContain(fs.readFileSync(file, 'utf8'));
    expect(fs.readdirSync(dir)).toEqual(['f.txt']);
  });

  it('a writer killed at a random moment leaves the old or the new file, never a prefix', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'ckpt.bin');
    const size = 4_000_000;
    fs.writeFileSync(file, Buffer.alloc(size, 0x30));
    const atomicUrl = new URL('../../src/io/atomic.ts', import.meta.url).href;
    // Rewrites the file forever, alternating two full-size payloads, until killed.
    const child = `
      import { writeFileAtomicSync } from ${JSON.stringify(atomicUrl)};
      const a = Buffer.alloc(${size}, 0x41), b = Buffer.alloc(${size}, 0x42);
      for (let i = 0; ; i++) { writeFileAtomicSync(${JSON.stringify(file)}, i % 2 ? b : a); if (i === 0) process.stdout.write('go\\n'); }
    `;
    const script = path.join(dir, 'writer.mts');
    fs.writeFileSync(script, child);
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    for (const delayMs of [0, 7, 23, 61]) {
      const proc = spawn(process.execPath, ['--import', 'tsx', script], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        proc.once('error', reject);
        proc.stdout.once('data', () => resolve());
      });
      // Read while it writes: every snapshot must be one whole payload.
      const until = Date.now() + delayMs;
      do {
        const seen = fs.readFileSync(file);
        expect(seen.length).toBe(size);
        expect(seen[0] === seen[size - 1] && seen.indexOf(seen[0] === 0x41 ? 0x42 : 0x41) === -1).toBe(true);
      } while (Date.now() < until);
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGKILL');
      await exited;
      const final = fs.readFileSync(file);
      expect(final.length).toBe(size);
      expect([0x41, 0x42]).toContain(final[0]);
      expect(final.every((b) => b === final[0])).toBe(true);
    }
    // Four tsx start-ups: seconds each on a loaded 2-core machine (30 s was exceeded there).
  }, budget(120_000));
});

describe('JSON helpers', () => {
  it('writes pretty JSON with a trailing newline and reads it back', async () => {
    const file = path.join(tmpDir(), 'config.json');
    await writeJsonAtomic(file, { lr: 1e-4, layers: [1, 2] });
    expect(fs.readFileSync(file, 'utf8')).toBe('{\n  "lr": 0.0001,\n  "layers": [\n    1,\n    2\n  ]\n}\n');
    expect(await readJson<{ lr: number }>(file)).toEqual({ lr: 1e-4, layers: [1, 2] });
    writeJsonAtomicSync(file, [true]);
    expect(readJsonSync(file)).toEqual([true]);
  });

  it('refuses values JSON cannot represent', async () => {
    await expect(writeJsonAtomic(path.join(tmpDir(), 'x.json'), undefined)).rejects.toThrow(/not JSON-serialisable/);
  });

  it('a parse failure is one line naming the file', async () => {
    const file = path.join(tmpDir(), 'broken.json');
    fs.writeFileSync(file, '{"a": 1,\n');
    const err = await readJson(file).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message.startsWith(`${file}: invalid JSON: `)).toBe(true);
    expect((err as Error).message).not.toContain('\n');
    expect(() => readJsonSync(file)).toThrow(file);
  });

  it('a missing file keeps the ENOENT error (callers test for it)', async () => {
    await expect(readJson(path.join(tmpDir(), 'nope.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

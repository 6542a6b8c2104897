// Run folders (issue 14): one writer per folder, a failed start leaves nothing behind, paths that cannot
// hold a run are refused at once, and files written once (rewind points) are never replaced.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { checkRunDir, makeRunDir, startRun } from '../../src/train/run.js';
import { LockHeldError } from '../../src/io/lock.js';
import { writeFileOnce, writeFileAtomic } from '../../src/io/atomic.js';
import { RUN_FILES } from '../../src/io/run-paths.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'runs-'));

describe('startRun', () => {
  it('refuses a second writer with one line naming the holder, and lets it in once the first is done', async () => {
    const dir = path.join(tmp(), 'a', 'b');
    const lock = await startRun(dir, { x: 1 }, { resume: false, purpose: 'ticketlab imp' });
    expect(JSON.parse(fs.readFileSync(path.join(dir, RUN_FILES.config), 'utf8'))).toEqual({ x: 1 });
    const err = await startRun(dir, { x: 1 }, { resume: true, purpose: 'ticketlab imp' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as Error).message).toMatch(new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by ticketlab imp \\(pid ${process.pid} on `));
    expect((err as Error).message).not.toContain('\n');
    lock.release();
    (await startRun(dir, { x: 1 }, { resume: true, purpose: 'ticketlab imp' })).release();
  });

  it('a refused start (other settings) leaves the folder as it was and releases the lock', async () => {
    const dir = path.join(tmp(), 'run');
    (await startRun(dir, { x: 1 }, { resume: false, purpose: 't' })).release();
    const before = fs.readdirSync(dir);
    await expect(startRun(dir, { x: 2 }, { resume: true, purpose: 't' })).rejects.toThrow(/made with other settings \(x differ\)/);
    expect(fs.readdirSync(dir)).toEqual(before);
  });

  it('refuses an existing folder of other files (no config.json) and leaves it as it was; an empty one is fine', async () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    fs.mkdirSync(path.join(dir, 'photos'));
    const err = await startRun(dir, { x: 1 }, { resume: false, purpose: 't' }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`--out ${dir} is not empty and holds no ticketlab run (no config.json; it has 'notes.txt', 'photos'); choose a new or empty folder`);
    expect(fs.readdirSync(dir).sort()).toEqual(['notes.txt', 'photos']);
    const empty = tmp();
    (await startRun(empty, { x: 1 }, { resume: false, purpose: 't' })).release();
    // A run killed before its config was written leaves only its lock: the folder is still ours.
    const killed = tmp();
    const now = new Date().toISOString();
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString());
    fs.writeFileSync(path.join(killed, RUN_FILES.lock), JSON.stringify({ host: os.hostname(), pid: dead, started: now, heartbeat: now, purpose: 't', token: 'x' }));
    (await startRun(killed, { x: 1 }, { resume: false, purpose: 't' })).release();
  });

  it('makeRunDir creates the missing components one by one and says which, outermost first', () => {
    const root = tmp();
    const dir = path.join(root, 'new', 'run');
    expect(makeRunDir(dir)).toEqual([path.join(root, 'new'), dir]);
    expect(makeRunDir(dir)).toEqual([]);
    expect(fs.statSync(dir).isDirectory()).toBe(true);
  });

  it('refuses paths that cannot hold a run, quickly and in one line', () => {
    const root = tmp();
    fs.writeFileSync(path.join(root, 'file'), '');
    const t0 = Date.now();
    if (fs.existsSync('/proc/self')) expect(() => makeRunDir('/proc/x/y')).toThrow(/^--out \/proc\/x\/y: \/proc is on procfs/);
    expect(() => checkRunDir(path.join(root, 'file', 'run'))).toThrow(/is a file, not a folder/);
    expect(() => checkRunDir(path.join(root, 'file'))).toThrow(/is a file; a run needs a folder/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('writeFileOnce', () => {
  it('writes once, accepts the same bytes again, refuses other bytes, and never changes the file', async () => {
    const f = path.join(tmp(), 'init.safetensors');
    expect(await writeFileOnce(f, 'abc')).toBe('written');
    expect(await writeFileOnce(f, 'abc')).toBe('same');
    await expect(writeFileOnce(f, 'abd')).rejects.toThrow(/already exists with other contents; it is written once and never replaced/);
    expect(fs.readFileSync(f, 'utf8')).toBe('abc');
    expect(fs.readdirSync(path.dirname(f))).toEqual(['init.safetensors']);
  });

  it('names the file when a write fails', async () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'notadir'), '');
    await expect(writeFileAtomic(path.join(dir, 'notadir', 'x.json'), '{}')).rejects.toThrow(/cannot write .*notadir\/x\.json: /);
  });
});

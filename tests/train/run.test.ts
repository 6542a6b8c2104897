// Run folders (issue 14): one writer per folder, a failed start leaves nothing behind, paths that cannot
// hold a run are refused at once, and files written once (rewind points) are never replaced.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { checkRunDir, makeRunDir, startRun } from '../../src/train/run.js';
import { LockHeldError, acquireLock } from '../../src/io/lock.js';
import { writeFileOnce, writeFileAtomic, TEMP_HOST } from '../../src/io/atomic.js';
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
    fs.mkdirSync(path.join(dir, 'level_0'));
    fs.writeFileSync(path.join(dir, 'level_0', RUN_FILES.metrics), '{"epoch":0}\n');
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

  it('three writers started at one instant: one runs, the others are told the folder is in use', async () => {
    // Each child waits for a common start time, then calls startRun on the same new folder and prints
    // what happened. Before the lock was taken first, a loser could see the winner's half-written
    // config.json.tmp-* and call the folder "not empty and holds no ticketlab run".
    const runTs = path.resolve(__dirname, '../../src/train/run.ts');
    for (let round = 0; round < 2; round++) {
      const dir = path.join(tmp(), 'race', 'run');
      const at = Date.now() + 1500;
      const script = `import { startRun } from ${JSON.stringify(runTs)};
        while (Date.now() < ${at}) {}
        try { const l = await startRun(${JSON.stringify(dir)}, { x: 1 }, { resume: false, purpose: 'racer' }); await new Promise((r) => setTimeout(r, 300)); l.release(); console.log('ok'); }
        catch (e) { console.log('ERR ' + e.message); }`;
      const outs = await Promise.all(
        [0, 1, 2].map(
          () =>
            new Promise<string>((resolve) => {
              const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
              let out = '';
              c.stdout.on('data', (d: Buffer) => (out += d.toString()));
              c.on('exit', () => resolve(out.trim()));
            }),
        ),
      );
      const ok = outs.filter((o) => o === 'ok');
      const refused = outs.filter((o) => o.startsWith('ERR '));
      expect(ok.length + refused.length, outs.join(' | ')).toBe(3);
      expect(ok.length, outs.join(' | ')).toBeGreaterThanOrEqual(1);
      // A loser that comes after the winner released the lock finds its (unfinished) run: also right.
      for (const r of refused) expect(r, outs.join(' | ')).toMatch(/ is in use by racer \(pid | holds an unfinished run; pass --resume/);
    }
  });

  it("the race's losing moment, made deterministic: a live writer's lock and half-written config give \"in use\"", async () => {
    const dir = path.join(tmp(), 'run');
    fs.mkdirSync(dir);
    const holder = acquireLock(path.join(dir, RUN_FILES.lock), { purpose: 'the first writer', heartbeatMs: 0 });
    fs.writeFileSync(path.join(dir, `${RUN_FILES.config}.tmp-1-abc`), '{"x":');
    try {
      await expect(startRun(dir, { x: 1 }, { resume: false, purpose: 't' })).rejects.toThrow(/ is in use by the first writer \(pid /);
    } finally {
      holder.release();
    }
  });

  it("a racer's private lock file, written aside before it is linked, is not mistaken for the user's files", async () => {
    // The moment the three-writer race can land on: another writer's private copy of the lock (a live
    // pid: the test runner's parent) sits in the folder while this one takes the lock.
    const dir = path.join(tmp(), 'run');
    fs.mkdirSync(dir);
    const racer = `${RUN_FILES.lock}.${TEMP_HOST}.${process.ppid}.0a1b2c3d.tmp`;
    fs.writeFileSync(path.join(dir, racer), '');
    fs.writeFileSync(path.join(dir, `${RUN_FILES.lock}.break`), '');
    (await startRun(dir, { x: 1 }, { resume: false, purpose: 't' })).release();
    expect(JSON.parse(fs.readFileSync(path.join(dir, RUN_FILES.config), 'utf8'))).toEqual({ x: 1 });
    // A file of the user's is still refused.
    const other = path.join(tmp(), 'run2');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, `${RUN_FILES.lock}.notes.txt`), 'mine');
    await expect(startRun(other, { x: 1 }, { resume: false, purpose: 't' })).rejects.toThrow(/is not empty and holds no ticketlab run/);
  });

  it('a run that stopped before its first epoch was saved is reused by the corrected command; a trained one is not', async () => {
    const dir = path.join(tmp(), 'run');
    (await startRun(dir, { batch: 32 }, { resume: false, purpose: 't' })).release();
    fs.mkdirSync(path.join(dir, 'level_0'));
    fs.writeFileSync(path.join(dir, 'level_0', RUN_FILES.init), 'w0');
    fs.writeFileSync(path.join(dir, 'level_0', RUN_FILES.kernels), '{}');
    const said: string[] = [];
    (await startRun(dir, { batch: 2 }, { resume: false, purpose: 't', log: (m) => said.push(m) })).release();
    expect(said).toEqual([`${dir}: the run there stopped before its first epoch was saved (batch differ); starting it afresh with these settings`]);
    expect(JSON.parse(fs.readFileSync(path.join(dir, RUN_FILES.config), 'utf8'))).toEqual({ batch: 2 });
    expect(fs.readdirSync(dir).sort()).toEqual([RUN_FILES.config]);
    // Once an epoch is saved, other settings are refused as before.
    fs.mkdirSync(path.join(dir, 'level_0'));
    fs.writeFileSync(path.join(dir, 'level_0', RUN_FILES.init), 'w0');
    fs.writeFileSync(path.join(dir, 'level_0', RUN_FILES.checkpoint), 'c1');
    await expect(startRun(dir, { batch: 3 }, { resume: true, purpose: 't' })).rejects.toThrow(/made with other settings \(batch differ\)/);
    expect(fs.existsSync(path.join(dir, 'level_0', RUN_FILES.checkpoint))).toBe(true);
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
    if (fs.existsSync('/proc/self')) expect(() => makeRunDir('/proc/x/y')).toThrow(/^--out \/proc\/x\/y: \/proc is on procfs/);
    expect(() => checkRunDir(path.join(root, 'file', 'run'))).toThrow(/is a file, not a folder/);
    expect(() => checkRunDir(path.join(root, 'file'))).toThrow(/is a file; a run needs a folder/);
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

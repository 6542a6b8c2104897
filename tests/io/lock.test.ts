import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { acquireLock, LockHeldError, lockIsStale, readLock, sweepPrivateFiles, tryAcquireLock, type LockHolder } from '../../src/io/lock.js';
import { budget } from '../budget.js';

function tmpLock(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tl-lock-')), 'run', '.lock');
}

function writeHolder(file: string, h: Partial<LockHolder>): LockHolder {
  const now = new Date().toISOString();
  const full: LockHolder = { host: os.hostname(), pid: process.pid, started: now, heartbeat: now, purpose: 'test', token: 'tok', ...h };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(full));
  return full;
}

/** A pid that surely no longer exists: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

describe('run-folder lock', () => {
  it('appears with its whole record (written aside, then linked), and leaves no private file behind', () => {
    const file = tmpLock();
    const dir = path.dirname(file);
    const a = acquireLock(file, { purpose: 'imp', heartbeatMs: 0 });
    // A racer that loses (the name exists) cleans up its private copy too.
    expect(tryAcquireLock(file, { purpose: 'train', heartbeatMs: 0 })).toBeNull();
    expect(fs.readdirSync(dir)).toEqual(['.lock']);
    // The file's first and only content is the holder: its inode was never an empty lock.
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).token).toBe(a.holder.token);
    expect(fs.statSync(file).nlink).toBe(1);
    a.release();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('is exclusive, names its holder, and can be taken again after release', () => {
    const file = tmpLock();
    const a = acquireLock(file, { purpose: 'imp', heartbeatMs: 0 });
    expect(readLock(file)?.token).toBe(a.holder.token);
    // Our own pid holds it: a second taker in this process must still be refused.
    let err: unknown;
    try {
      acquireLock(file, { purpose: 'train', heartbeatMs: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LockHeldError);
    const msg = (err as Error).message;
    expect(msg).toContain(`pid ${process.pid}`);
    expect(msg).toContain('imp');
    expect(msg.split('\n')).toHaveLength(1);
    a.release();
    expect(fs.existsSync(file)).toBe(false);
    const b = acquireLock(file, { purpose: 'train', heartbeatMs: 0 });
    b.release();
    a.release(); // twice is harmless and does not remove b's successor
  });

  it('takes over the lock of a dead process on the same host at once', () => {
    const file = tmpLock();
    writeHolder(file, { pid: deadPid() });
    const l = tryAcquireLock(file, { purpose: 'worker', heartbeatMs: 0 });
    expect(l).not.toBeNull();
    expect(readLock(file)?.pid).toBe(process.pid);
    l!.release();
  });

  it('on the same host, a live holder keeps its lock however old its heartbeat; a reused pid does not', async () => {
    // A run stopped with Ctrl-Z stops beating: a second writer once took its folder over after 60 s.
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const h = writeHolder(tmpLock(), { pid: child.pid!, token: 'stopped' });
      expect(lockIsStale(h, 60_000, Date.now() + 3_600_000)).toBe(false);
      // The same pid, but the lock was taken an hour before that process started: its holder is gone.
      const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
      expect(lockIsStale({ ...h, started: hourAgo, heartbeat: hourAgo })).toBe(true);
    } finally {
      child.kill();
    }
  });

  it('on other hosts judges by heartbeat age', () => {
    const file = tmpLock();
    writeHolder(file, { host: 'elsewhere', pid: 1, heartbeat: new Date().toISOString() });
    expect(tryAcquireLock(file, { purpose: 'w', staleMs: 60_000, heartbeatMs: 0 })).toBeNull();
    writeHolder(file, { host: 'elsewhere', pid: 1, heartbeat: new Date(Date.now() - 120_000).toISOString() });
    const l = tryAcquireLock(file, { purpose: 'w', staleMs: 60_000, heartbeatMs: 0 });
    expect(l).not.toBeNull();
    l!.release();
    expect(lockIsStale({ host: 'x', pid: 1, started: '', heartbeat: 'garbage', purpose: '', token: '' })).toBe(true);
  });

  it('a damaged lock file goes stale by its age instead of blocking forever', () => {
    const file = tmpLock();
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '{"host":');
    expect(tryAcquireLock(file, { purpose: 'w', staleMs: 60_000, heartbeatMs: 0 })).toBeNull();
    const old = new Date(Date.now() - 120_000);
    fs.utimesSync(file, old, old);
    const l = tryAcquireLock(file, { purpose: 'w', staleMs: 60_000, heartbeatMs: 0 });
    expect(l).not.toBeNull();
    l!.release();
  });

  it('a folder where the lock file should be is a one-line error naming it', () => {
    const file = tmpLock();
    fs.mkdirSync(file, { recursive: true });
    expect(() => acquireLock(file, { purpose: 'w', heartbeatMs: 0 })).toThrow(`${file} is a folder, not a lock file`);
  });

  it('refreshes its heartbeat, and notices when a successor took over', async () => {
    const file = tmpLock();
    const l = acquireLock(file, { purpose: 'w', heartbeatMs: 20 });
    const first = readLock(file)!.heartbeat;
    await new Promise((r) => setTimeout(r, 80));
    expect(Date.parse(readLock(file)!.heartbeat)).toBeGreaterThan(Date.parse(first));
    writeHolder(file, { host: 'successor', token: 'other' });
    l.refresh();
    expect(l.lost).toBe(true);
    l.release();
    expect(readLock(file)?.host).toBe('successor'); // release never removes someone else's lock
  });

  it('exactly one of many racing processes wins', async () => {
    const file = tmpLock();
    // Every process keeps what it got until all have tried (the done file), so a slow start cannot
    // turn a race into a relay.
    const done = path.join(path.dirname(file), 'all-tried');
    const lockModule = path.resolve('src/io/lock.ts');
    const script = `import * as fs from 'node:fs';
      import { tryAcquireLock } from ${JSON.stringify(lockModule)};
      const l = tryAcquireLock(${JSON.stringify(file)}, { purpose: 'race', heartbeatMs: 0 });
      process.stdout.write(l ? 'won' : 'lost');
      const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(done)})) { clearInterval(t); process.exit(0); } }, 20);`;
    const tsx = path.resolve('node_modules/.bin/tsx');
    const outs: string[] = [];
    const runs = Array.from({ length: 6 }, (_, i) =>
      new Promise<void>((resolve, reject) => {
        outs[i] = '';
        const p = spawn(tsx, ['--eval', script], { stdio: ['ignore', 'pipe', 'inherit'] });
        p.stdout.on('data', (d: Buffer) => {
          outs[i] += d.toString();
          if (outs.filter((o) => o === 'won' || o === 'lost').length === 6) fs.writeFileSync(done, '');
        });
        p.on('error', reject);
        p.on('close', () => resolve());
      }),
    );
    await Promise.all(runs);
    expect(outs.filter((r) => r === 'won')).toHaveLength(1);
    expect(outs.filter((r) => r === 'lost')).toHaveLength(5);
  }, budget(60_000));

  it("a private file left by a process killed between writing and linking it is swept when the lock is next taken", async () => {
    const file = tmpLock();
    const dir = path.dirname(file);
    // A real kill at that instant: the child's link(2) SIGKILLs it, after its private file is written.
    const lockModule = path.resolve('src/io/lock.ts');
    const script = `const fs = require('node:fs');
      fs.linkSync = () => process.kill(process.pid, 'SIGKILL');
      require('node:module').syncBuiltinESMExports();
      void import(${JSON.stringify(lockModule)}).then((m) => m.tryAcquireLock(${JSON.stringify(file)}, { purpose: 'killed', heartbeatMs: 0 }));`;
    const tsx = path.resolve('node_modules/.bin/tsx');
    const child = spawnSync(tsx, ['--eval', script], { encoding: 'utf8' });
    // tsx runs the script in a child node and exits 128 + 9 when that one is killed.
    expect(child.signal === 'SIGKILL' || child.status === 137, child.stderr).toBe(true);
    const left = fs.readdirSync(dir);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^\.lock\..+\.\d+\.[0-9a-f]{8}\.tmp$/);
    const l = acquireLock(file, { purpose: 'next', heartbeatMs: 0 });
    expect(fs.readdirSync(dir)).toEqual(['.lock']);
    l.release();
  }, budget(60_000));

  it('sweeps by pid on this host and by age elsewhere, and leaves everything else alone', () => {
    const file = tmpLock();
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    const host = os.hostname().replace(/[^\w.-]/g, '_');
    const dead = deadPid();
    const old = new Date(Date.now() - 3_600_000);
    const cases: Array<[name: string, swept: boolean, aged?: boolean]> = [
      [`.lock.${host}.${dead}.0123abcd.tmp`, true],
      [`.lock.break.${host}.${dead}.0123abcd.tmp`, true],
      [`.lock.${host}.${process.pid}.0123abcd.tmp`, false], // a live writer's (this process)
      [`.lock.other-host.example.${dead}.0123abcd.tmp`, false], // a pid of another host says nothing
      [`.lock.other-host.example.${dead}.4567abcd.tmp`, true, true],
      [`.lock.${dead}.0123abcd.tmp`, false], // an earlier version's name: no host, so by age
      [`.lock.${dead}.4567abcd.tmp`, true, true],
      ['.lock.tmp', false, true],
      [`.lockfile.${host}.${dead}.0123abcd.tmp`, false, true],
      [`notes.${host}.${dead}.0123abcd.tmp`, false, true],
    ];
    for (const [name, , aged] of cases) {
      fs.writeFileSync(path.join(dir, name), 'x');
      if (aged) fs.utimesSync(path.join(dir, name), old, old);
    }
    sweepPrivateFiles(file);
    expect(fs.readdirSync(dir).sort()).toEqual(cases.filter(([, swept]) => !swept).map(([n]) => n).sort());
  });
});

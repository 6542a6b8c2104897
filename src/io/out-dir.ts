// Output folders: checked before anything is written (a real, writable file system; not a file), and
// created one component at a time. Shared by run folders (train/run.ts) and `ticketlab faces`.
import * as fs from 'node:fs';
import * as path from 'node:path';

// statfs(2) magic numbers of kernel pseudo file systems, which cannot hold files (mkdir there fails with
// ENOENT, on which Node's recursive mkdir loops for ever).
const PSEUDO_FS: Record<number, string> = { 0x9fa0: 'procfs', 0x62656572: 'sysfs', 0x1cd1: 'devpts', 0x27e0eb: 'cgroup', 0x63677270: 'cgroup2', 0x64626720: 'debugfs', 0x73636673: 'securityfs', 0x6e736673: 'nsfs' };

/** The deepest folder of `dir`'s path that exists (dir itself when it exists). */
export function existingAncestor(dir: string): string {
  let at = path.resolve(dir);
  for (;;) {
    if (fs.existsSync(at)) return at;
    const up = path.dirname(at);
    if (up === at) return at;
    at = up;
  }
}

/**
 * Checks, without writing anything, that `dir` can hold a run: its nearest existing ancestor is a folder
 * we may write in, on a real file system. One-line errors naming --out; called before a run starts.
 */
export function checkRunDir(dir: string, flag = '--out'): void {
  const at = existingAncestor(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(at);
  } catch (e) {
    throw new Error(`${flag} ${dir}: cannot read ${at} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!st.isDirectory()) throw new Error(`${flag} ${dir}: ${at} is ${at === path.resolve(dir) ? 'a file' : 'a file, not a folder'}; a run needs a folder`);
  try {
    const fsType = PSEUDO_FS[Number(fs.statfsSync(at).type)];
    if (fsType) throw new Error(`${flag} ${dir}: ${at} is on ${fsType}, a kernel pseudo file system that cannot hold a run`);
  } catch (e) {
    if ((e as Error).message.startsWith(flag)) throw e;
    // statfs is unavailable on some platforms; the writability check below still applies
  }
  try {
    fs.accessSync(at, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    throw new Error(`${flag} ${dir}: ${at} is not writable`);
  }
}

/**
 * Creates `dir` one component at a time (not with a recursive mkdir, which never returns on /proc),
 * after checkRunDir. Returns the folders it created, outermost first, so a failed start can remove them.
 */
export function makeRunDir(dir: string, flag = '--out'): string[] {
  checkRunDir(dir, flag);
  const target = path.resolve(dir);
  const missing: string[] = [];
  for (let at = target; !fs.existsSync(at); at = path.dirname(at)) missing.unshift(at);
  const made: string[] = [];
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
      made.push(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && fs.statSync(d).isDirectory()) continue;
      throw new Error(`${flag} ${dir}: cannot create ${d} (${code ?? (e as Error).message.split('\n')[0]})`);
    }
  }
  return made;
}

/**
 * `dir` with every symlink of its existing part resolved, whether or not `dir` itself exists yet: two
 * spellings of one folder (a relative path, a symlink, `a/../b`) compare equal.
 */
export function realPathOf(dir: string): string {
  const abs = path.resolve(dir);
  const at = existingAncestor(abs);
  let real: string;
  try {
    real = fs.realpathSync(at);
  } catch {
    real = at;
  }
  return path.join(real, path.relative(at, abs));
}

/** Whether `inner` is `outer` or lies below it, after resolving symlinks (realPathOf). */
export function isSameOrInside(inner: string, outer: string): boolean {
  const rel = path.relative(realPathOf(outer), realPathOf(inner));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

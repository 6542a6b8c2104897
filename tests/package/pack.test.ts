// The package as a user gets it: `npm pack` (prepack compiles src/ to dist/), the tarball installed
// into a fresh project offline (npm's cache, filled by `npm ci`, supplies the dependencies; the
// project's lockfile is cut from ours so no registry metadata is needed), then the two examples of
// examples/library/ type-checked and compiled by that project's tsc and run by plain Node (no tsx):
// one trains a tiny model, prunes one IMP level and checks the run; one property-tests a user's
// scoring function with ticketlab/testing.
import { describe, expect, it } from 'vitest';
import { execFile, type ExecFileOptions } from 'node:child_process';
import { promisify } from 'node:util';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXAMPLES = path.join(ROOT, 'examples', 'library');

interface LockEntry {
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  dev?: boolean;
  devOptional?: boolean;
  [k: string]: unknown;
}

const execFileAsync = promisify(execFile);

// Asynchronous on purpose: a synchronous child blocks the vitest worker's event loop for the minute
// npm and the examples take, and vitest then reports "Timeout calling onTaskUpdate" (exit 1) even though
// the test passed.
async function run(cmd: string, args: string[], o: ExecFileOptions & { cwd: string }): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' }, ...o });
    return String(stdout);
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} in ${o.cwd} failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

/**
 * package.json + package-lock.json of a user project that depends on the tarball and on the
 * examples' own dependencies, with every entry (and integrity) copied from our lockfile, so that
 * `npm ci --offline` needs only cached tarballs.
 */
function writeUserProject(dir: string, tarball: string): void {
  const ours = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string>; dependencies: Record<string, string>; peerDependencies: Record<string, string>; peerDependenciesMeta: Record<string, unknown> };
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const example = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  const closure = new Set<string>();
  const visit = (name: string) => {
    const key = `node_modules/${name}`;
    const e = lock.packages[key];
    if (closure.has(key) || !e) return;
    closure.add(key);
    for (const d of Object.keys({ ...e.dependencies, ...e.optionalDependencies })) visit(d);
  };
  const user = { ...example.dependencies, ...example.devDependencies };
  for (const d of [...Object.keys(ours.dependencies), ...Object.keys(user)]) if (d !== 'ticketlab') visit(d);
  const spec = `file:${path.basename(tarball)}`;
  const deps = { ...example.dependencies, ticketlab: spec };
  const packages: Record<string, LockEntry> = {
    '': { name: 'user-project', dependencies: deps, devDependencies: example.devDependencies },
    'node_modules/ticketlab': {
      version: ours.version,
      resolved: spec,
      integrity: `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`,
      // npm ci links node_modules/.bin from the lockfile's entry, not from the tarball's package.json.
      bin: ours.bin,
      dependencies: ours.dependencies,
      peerDependencies: ours.peerDependencies,
      peerDependenciesMeta: ours.peerDependenciesMeta,
    },
  };
  for (const key of [...closure].sort()) {
    const { dev: _dev, devOptional: _devOptional, ...e } = lock.packages[key];
    packages[key] = e;
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module', dependencies: deps, devDependencies: example.devDependencies }, null, 2));
  fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ name: 'user-project', lockfileVersion: 3, requires: true, packages }, null, 2));
}

describe('the npm package', () => {
  it('packs, installs offline into a fresh project, type-checks and runs the library examples in plain Node', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-pack-'));
    // prepack compiles dist/; older npms print the script's banner on stdout before the JSON.
    const stdout = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT });
    const packed = JSON.parse(stdout.slice(stdout.search(/^\[/m))) as { filename: string; files: { path: string }[] }[];
    const files = packed[0].files.map((f) => f.path);
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/prune/index.d.ts', 'dist/testing/index.js', 'bin/ticketlab.mjs', 'src/cli/main.ts']) expect(files, f).toContain(f);
    expect(files.some((f) => f.startsWith('tests/'))).toBe(false);

    const project = path.join(tmp, 'project');
    fs.mkdirSync(project);
    const tarball = path.join(project, path.basename(packed[0].filename));
    fs.renameSync(path.join(tmp, packed[0].filename), tarball);
    for (const f of fs.readdirSync(EXAMPLES)) if (f.endsWith('.ts') || f === 'tsconfig.json') fs.copyFileSync(path.join(EXAMPLES, f), path.join(project, f));
    writeUserProject(project, tarball);
    try {
      await run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: project });
    } catch (e) {
      if (/ENOTCACHED/.test((e as Error).message)) throw new Error(`npm's cache lacks a dependency of the package: run 'npm ci' once in ${ROOT} (it fills the cache), then re-run this test`);
      throw e;
    }

    // Type-check against the published .d.ts (skipLibCheck off: our declarations must compile too) and emit.
    await run(process.execPath, [path.join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], { cwd: project });
    const props = await run(process.execPath, ['out/score-properties.js'], { cwd: project });
    expect(props).toMatch(/every mask invariant holds/);
    const runDir = path.join(tmp, 'run');
    const out = await run(process.execPath, ['out/train-prune-check.js', runDir], { cwd: project, timeout: 180_000 });
    expect(out).toMatch(/level 1: 20\.0% pruned/);
    expect(out).toMatch(/PASS {2}masks are 0\/1/);
    expect(out).toMatch(/all invariants hold/);
    expect(fs.existsSync(path.join(runDir, 'level_1', 'mask.safetensors'))).toBe(true);
    // The installed command (bin/ticketlab.mjs runs the shipped src/ through tsx) checks the same run.
    const cli = await run(path.join(project, 'node_modules', '.bin', 'ticketlab'), ['check', runDir], { cwd: project });
    expect(cli).toMatch(/PASS {2}each level's mask within the previous one/);
    expect(cli).toMatch(/all invariants hold/);
    fs.rmSync(tmp, { recursive: true, force: true });
  }, 300_000); // about 45 s on a loaded 2-core machine; the limit only guards against a hang
});

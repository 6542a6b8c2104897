// The package as a user gets it: `npm pack` (prepack compiles src/ to dist/), the tarball installed
// into a fresh project offline (npm's cache, filled by `npm ci`, supplies the dependencies; the
// project's lockfile is cut from ours so no registry metadata is needed), then the examples of
// examples/library/ type-checked with --strict and without skipLibCheck by every combination of
//   - TypeScript: the version our package.json pins, and the current release (tests/package/ts-current,
//     installed from its lockfile; from npm's cache after the first run);
//   - module system: an ES module project (top-level await, default lib, so lib.dom is in: the clash
//     with @webgpu/types that TypeScript >= 6 showed) and a CommonJS project (dynamic import(),
//     lib ES2022 only);
// and run by plain Node (no tsx): one trains a tiny model, prunes one IMP level and checks the run; one
// property-tests a user's scoring function with ticketlab/testing; the CommonJS one loads the entries.
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
const TS_CURRENT = path.join(ROOT, 'tests', 'package', 'ts-current');

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
  const example = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string>; allowScripts: Record<string, boolean> };
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
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module', dependencies: deps, devDependencies: example.devDependencies, allowScripts: example.allowScripts }, null, 2));
  fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ name: 'user-project', lockfileVersion: 3, requires: true, packages }, null, 2));
}

/** Every .d.ts under `dir`. */
function declarations(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.d.ts')).map((f) => path.join(dir, f));
}

describe('the npm package', () => {
  it('packs, installs offline into fresh ESM and CommonJS projects, type-checks them with the pinned and the current TypeScript, and runs the examples in plain Node', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-pack-'));
    // prepack compiles dist/; older npms print the script's banner on stdout before the JSON.
    const stdout = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT });
    const packed = JSON.parse(stdout.slice(stdout.search(/^\[/m))) as { filename: string; files: { path: string }[] }[];
    const files = packed[0].files.map((f) => f.path);
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/prune/index.d.ts', 'dist/prune/types.d.ts', 'dist/testing/index.js', 'bin/ticketlab.mjs', 'src/cli/main.ts', 'python/ticketlab_torch.py']) expect(files, f).toContain(f);
    expect(files.some((f) => f.startsWith('tests/'))).toBe(false);

    const project = path.join(tmp, 'project');
    fs.mkdirSync(project);
    const tarball = path.join(project, path.basename(packed[0].filename));
    fs.renameSync(path.join(tmp, packed[0].filename), tarball);
    for (const f of fs.readdirSync(EXAMPLES)) if (f.endsWith('.ts') || f === 'tsconfig.json') fs.copyFileSync(path.join(EXAMPLES, f), path.join(project, f));
    // The CommonJS project sits inside the ESM one: its own package.json says "commonjs", and Node and
    // tsc find the installed packages in the parent's node_modules.
    const cjs = path.join(project, 'commonjs');
    fs.cpSync(path.join(EXAMPLES, 'commonjs'), cjs, { recursive: true });
    fs.writeFileSync(path.join(cjs, 'package.json'), JSON.stringify({ name: 'user-project-cjs', private: true, type: 'commonjs' }, null, 2));
    writeUserProject(project, tarball);
    try {
      await run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: project });
    } catch (e) {
      if (/ENOTCACHED/.test((e as Error).message)) throw new Error(`npm's cache lacks a dependency of the package: run 'npm ci' once in ${ROOT} (it fills the cache), then re-run this test`);
      throw e;
    }
    const current = path.join(tmp, 'ts-current');
    fs.mkdirSync(current);
    for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(TS_CURRENT, f), path.join(current, f));
    // The only step that may need the network, once: afterwards npm's cache has the compiler.
    await run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: current });

    // The published declarations name no WebGPU type and reference no @webgpu/types.
    for (const f of declarations(path.join(project, 'node_modules', 'ticketlab', 'dist'))) {
      const text = fs.readFileSync(f, 'utf8');
      expect(text, f).not.toMatch(/@webgpu\/types/);
      expect(text.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ''), f).not.toMatch(/\bGPU[A-Z]\w*/);
    }

    const compilers = [
      { name: 'pinned', tsc: path.join(project, 'node_modules', 'typescript', 'bin', 'tsc') },
      { name: 'current', tsc: path.join(current, 'node_modules', 'typescript', 'bin', 'tsc') },
    ];
    const versions: string[] = [];
    for (const c of compilers) versions.push((await run(process.execPath, [c.tsc, '--version'], { cwd: project })).trim());
    expect(versions[1], 'the current TypeScript is another major version than the pinned one').not.toBe(versions[0]);
    // Type-check against the published .d.ts (strict, skipLibCheck off: our declarations must compile
    // too); the current compiler checks only, the pinned one also emits what Node runs below.
    for (const [i, c] of compilers.entries()) {
      for (const dir of [project, cjs]) {
        const args = i === 0 ? ['-p', '.'] : ['-p', '.', '--noEmit'];
        await run(process.execPath, [c.tsc, ...args], { cwd: dir }).catch((e: Error) => {
          throw new Error(`${versions[i]} (${c.name}) on the ${dir === cjs ? 'CommonJS' : 'ESM'} project: ${e.message}`);
        });
      }
    }

    const loaded = await run(process.execPath, ['out/index.js'], { cwd: cjs });
    expect(loaded).toMatch(/^models meso4 mesoinception4 cnn5 resnet18; granularities weight block:4 block:8 block:16 channel filter$/m);
    expect(loaded).toMatch(/a mask holding 0\.5: conv1\.weight\[2\] holds 0\.5/);
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
  }, 420_000); // about 2 min on a 2-core machine at load 19; the limit only guards against a hang
});

// The import graph of src/ (relative imports and re-exports, type-only ones included: a type import
// still ties a module to the layer it names) and its checks: imports that point up the layer table, and
// circles between files (strongly connected components of more than one file, or a file importing itself).
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The layers, top to bottom; a row holds layers beside each other (neither imports the other). A file
 * may import its own layer and any layer in a lower row. `index` is src/index.ts, the package entry.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['cli'],
  ['index'],
  ['explain'],
  ['report', 'testing'],
  ['prune'],
  ['train'],
  ['nn', 'faces'],
  ['autograd'],
  ['tensor'],
  ['shaders', 'data'],
  ['io'],
  ['util'],
];

/** file (relative to src, '/'-separated) -> the files it imports */
export type ImportGraph = Map<string, Set<string>>;

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"](\.[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.[^'"]+)['"]|\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g;

export function importGraph(srcDir: string): ImportGraph {
  const files = walk(srcDir).map((f) => path.relative(srcDir, f).split(path.sep).join('/'));
  const known = new Set(files);
  const g: ImportGraph = new Map();
  for (const f of files) {
    const deps = new Set<string>();
    const text = fs.readFileSync(path.join(srcDir, f), 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3];
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), spec)).replace(/\.js$/, '.ts');
      if (known.has(target)) deps.add(target);
      else if (known.has(`${target}/index.ts`)) deps.add(`${target}/index.ts`);
      else throw new Error(`${f}: import '${spec}' names no file under ${srcDir}`);
    }
    g.set(f, deps);
  }
  return g;
}

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return walk(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

export function layerOf(file: string): string {
  return file.includes('/') ? file.slice(0, file.indexOf('/')) : path.posix.basename(file, '.ts');
}

function rank(layer: string): number {
  const r = LAYERS.findIndex((row) => row.includes(layer));
  if (r < 0) throw new Error(`src/${layer}: a folder the layer table (scripts/import-graph.ts LAYERS) does not list`);
  return r;
}

/** layer -> the other layers its files import */
export function layerEdges(g: ImportGraph): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [f, deps] of g) {
    const from = layerOf(f);
    if (!out.has(from)) out.set(from, new Set());
    for (const d of deps) if (layerOf(d) !== from) out.get(from)!.add(layerOf(d));
  }
  return out;
}

/** Imports of a layer in the same or a higher row (other than its own layer). */
export function upwardImports(g: ImportGraph): { from: string; to: string }[] {
  const out: { from: string; to: string }[] = [];
  for (const [f, deps] of g) {
    for (const d of deps) {
      const a = layerOf(f);
      const b = layerOf(d);
      if (a !== b && rank(b) <= rank(a)) out.push({ from: f, to: d });
    }
  }
  return out;
}

/** Import circles: each strongly connected component of two or more files (Tarjan), or a self-import. */
export function circles(g: ImportGraph): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || g.get(v)?.has(v)) out.push(comp.sort());
    }
  };
  for (const v of [...g.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

// The layering of docs/architecture.md, checked against the imports (scripts/import-graph.ts; `npx tsx
// scripts/layers.ts` prints the graph): no file imports a layer above its own or beside it, and no
// import circle joins files. The checks themselves are tested on small hand-made trees.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { circles, importGraph, layerEdges, upwardImports } from '../../scripts/import-graph.js';

const SRC = path.join(import.meta.dirname, '..', '..', 'src');

function tree(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-'));
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), text);
  }
  return root;
}

describe('src/ layering', () => {
  const g = importGraph(SRC);
  it('no file imports a layer above (or beside) its own', () => {
    expect(upwardImports(g).map((u) => `${u.from} -> ${u.to}`)).toEqual([]);
  });
  it('no import circle', () => {
    expect(circles(g).map((c) => c.join(' -> '))).toEqual([]);
  });
  it('shaders/ and util/ import no other layer; data/ and io/ stay off the GPU', () => {
    const e = layerEdges(g);
    expect([...(e.get('shaders') ?? [])]).toEqual([]);
    expect([...(e.get('util') ?? [])]).toEqual([]);
    for (const l of ['data', 'io']) for (const to of e.get(l) ?? []) expect(['tensor', 'shaders', 'nn', 'autograd']).not.toContain(to);
  });
});

describe('the checks', () => {
  it('find an upward import, a circle through a re-export, and a self-import', () => {
    const root = tree({
      'tensor/a.ts': "import { b } from './b.js';\nexport const a = b;\n",
      'tensor/b.ts': "export { a } from './a.js';\nexport const b = 1;\n",
      'util/u.ts': "import type { a } from '../tensor/a.js';\nexport type U = typeof a;\n",
      'io/self.ts': "import { s } from './self.js';\nexport const s = 1;\n",
    });
    const g = importGraph(root);
    expect(upwardImports(g)).toEqual([{ from: 'util/u.ts', to: 'tensor/a.ts' }]);
    expect(circles(g)).toEqual([['io/self.ts'], ['tensor/a.ts', 'tensor/b.ts']]);
  });
  it('pass a tree that imports only downwards, and name an import of a missing file', () => {
    expect(upwardImports(importGraph(tree({ 'cli/c.ts': "import { x } from '../util/x.js';\n", 'util/x.ts': 'export const x = 1;\n' })))).toEqual([]);
    expect(() => importGraph(tree({ 'cli/c.ts': "import { y } from '../util/y.js';\n" }))).toThrow(/cli\/c\.ts: import '\.\.\/util\/y\.js' names no file/);
  });
});

// npx tsx scripts/layers.ts [SRC_DIR]: the layer graph of src/ drawn from its imports, the imports that
// point up a layer, and the import circles between files. Exits 1 when there is an upward import or a
// circle (tests/layers.test.ts runs the same check). docs/architecture.md's layer table is LAYERS below.
import * as path from 'node:path';
import { importGraph, layerEdges, LAYERS, layerOf, upwardImports, circles } from './import-graph.js';

const root = path.resolve(process.argv[2] ?? 'src');
const graph = importGraph(root);
const edges = layerEdges(graph);
process.stdout.write(`layers, top to bottom (a layer imports only the ones below it):\n`);
for (const row of LAYERS) {
  for (const layer of row) {
    const below = [...(edges.get(layer) ?? [])].sort((a, b) => layerRank(a) - layerRank(b) || a.localeCompare(b));
    process.stdout.write(`  ${layer.padEnd(9)} -> ${below.join(', ') || '(nothing)'}\n`);
  }
}
const up = upwardImports(graph);
const loops = circles(graph);
for (const u of up) process.stdout.write(`upward import: ${u.from} (${layerOf(u.from)}) imports ${u.to} (${layerOf(u.to)})\n`);
for (const c of loops) process.stdout.write(`import circle: ${c.join(' -> ')} -> ${c[0]}\n`);
process.stdout.write(`${graph.size} files, ${up.length} upward imports, ${loops.length} import circles\n`);
process.exit(up.length || loops.length ? 1 : 0);

function layerRank(l: string): number {
  return LAYERS.findIndex((row) => row.includes(l));
}

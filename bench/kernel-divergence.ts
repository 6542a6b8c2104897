// Where two IMP runs that differ only in kernel choice part (issue 20, docs/sparse-kernels.md):
//   tsx bench/kernel-divergence.ts RUN_A RUN_B
// For every level: the largest weight difference of final.safetensors relative to the tensor's largest
// magnitude, the mask bits that differ (of all), and the test accuracy of each.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readF32Tensors } from '../src/nn/checkpoint.js';
import { listLevelFolders, runFile } from '../src/io/run-paths.js';

const [a, b] = process.argv.slice(2);
if (!a || !b) throw new Error('usage: tsx bench/kernel-divergence.ts RUN_A RUN_B');

async function tensors(file: string) {
  return fs.existsSync(file) ? (await readF32Tensors(file)).tensors : new Map();
}

for (const la of listLevelFolders(a).filter((l) => l.family === 'imp')) {
  const lb = path.join(b, path.relative(a, la.dir));
  const out: string[] = [`level ${la.level}`];
  for (const file of ['start', 'final'] as const) {
    const [ta, tb] = await Promise.all([tensors(runFile(la.dir, file)), tensors(runFile(lb, file))]);
    let worst = 0;
    let worstKey = '';
    for (const [k, t] of ta) {
      const u = tb.get(k);
      if (!u) continue;
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < t.data.length; i++) {
        scale = Math.max(scale, Math.abs(t.data[i]));
        diff = Math.max(diff, Math.abs(t.data[i] - u.data[i]));
      }
      const rel = scale > 0 ? diff / scale : diff;
      if (rel > worst) [worst, worstKey] = [rel, k];
    }
    if (ta.size) out.push(`${file}: max |a-b|/max|a| ${worst.toExponential(2)}${worstKey ? ` (${worstKey})` : ''}`);
  }
  const [ma, mb] = await Promise.all([tensors(runFile(la.dir, 'mask')), tensors(runFile(lb, 'mask'))]);
  let differ = 0;
  let total = 0;
  for (const [k, t] of ma) {
    const u = mb.get(k);
    for (let i = 0; i < t.data.length; i++) if (t.data[i] !== u?.data[i]) differ++;
    total += t.data.length;
  }
  if (total) out.push(`mask bits differing ${differ} of ${total}`);
  const acc = (d: string) => (JSON.parse(fs.readFileSync(runFile(d, 'result'), 'utf8')) as { test: { accuracy: number } }).test.accuracy;
  out.push(`test accuracy ${(acc(la.dir) * 100).toFixed(2)}% vs ${(acc(lb) * 100).toFixed(2)}%`);
  console.log(out.join('; '));
}

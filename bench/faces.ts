// Face detection speed: SSD-MobileNet-v1 (512 x 512 input) on our kernels, frames per second at batch 1
// and batch B, plus per-kernel GPU time of one frame from timestamp queries. Never asserted anywhere.
// Usage: npx tsx bench/faces.ts [frames=5] [batch=4]
import * as os from 'node:os';
import * as path from 'node:path';
import { initDevice, closeDevice, queue } from '../src/tensor/index.js';
import { decodeImage } from '../src/data/image.js';
import { FaceDetector } from '../src/faces/detector.js';
import { defaultModelDir } from '../src/faces/ssd-mobilenet.js';

const [framesS = '5', batchS = '4'] = process.argv.slice(2);
const [frames, batch] = [framesS, batchS].map(Number);
const dev = await initDevice();
const det = new FaceDetector();
const img = await decodeImage(path.join(path.dirname(defaultModelDir()), 'demo', 'sample1.jpg'));
await det.detect([img]); // pipelines compiled, weights uploaded

async function fps(b: number, n: number): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < n; i++) await det.detect(Array(b).fill(img));
  return (b * n) / ((performance.now() - t) / 1000);
}
const one = await fps(1, frames);
const many = await fps(batch, Math.max(1, Math.round(frames / batch)));
queue.startProfile();
await det.detect([img]);
const prof = await queue.stopProfile();
const by = new Map<string, number>();
for (const p of prof) by.set(p.name, (by.get(p.name) ?? 0) + p.ms);
console.log(`adapter: ${dev.info.device || dev.info.description}${dev.info.isSoftware ? ' (software)' : ''}; load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} CPUs`);
console.log(`detection, 512x512 input (image decode excluded): batch 1 ${one.toFixed(3)} frames/s, batch ${batch} ${many.toFixed(3)} frames/s`);
console.log('GPU time of one frame by kernel (ms):');
for (const [k, v] of [...by].sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(28)} ${v.toFixed(1)}`);
det.dispose();
closeDevice();

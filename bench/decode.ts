// The first pass, per image: the JPEG decode (libjpeg-turbo through koffi, which the first pass uses, and
// sharp's, the fallback) and our resize to the training size (toCHWBytes), in CPU milliseconds, beside
// PIL + torchvision on the same files in the same run (Image.open + convert('RGB'),
// then Resize(antialias=True) + RandomHorizontalFlip + ToTensor); and the decode pool's images/s on every
// core (decode + resize in worker threads, bytes back on the main thread). CPU time is process time (all
// threads), so libvips' and PIL's threads count; rounds alternate and the medians are kept, which holds
// up on a shared machine better than wall time. No cache and no device are involved: bench/loader.ts
// measures the whole loader.
// The JPEGs go through the turbo path (decodeImageBuffer) and through sharp alone (decodeWithSharp), the
// same files in the same round. Without libturbojpeg the turbo column is '-'.
// Usage: npx tsx bench/decode.ts [--images N] [--rounds R] [--sizes 64,256] [--json]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { decodeImageBuffer, decodeWithSharp, toCHWBytes, toCHWFloat, chwToRgb, type RgbImage } from '../src/data/image.js';
import { turboJpeg } from '../src/data/jpeg-turbo.js';
import { DecodePool } from '../src/data/decode-pool.js';
import { torchPython, table } from './util.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const count = Number(flag('images') ?? 60);
const rounds = Number(flag('rounds') ?? 5);
const sizes = (flag('sizes') ?? '64,256').split(',').map(Number);
const json = args.includes('--json');
const cores = os.availableParallelism();

/** 320 px JPEGs (quality 90) with smooth gradients and noise, as photos of faces compress. */
async function makeJpegs(dir: string): Promise<string[]> {
  const W = 320;
  const files: string[] = [];
  for (let k = 0; k < count; k++) {
    const px = Buffer.alloc(W * W * 3);
    let s = (k * 2246822519 + 7) >>> 0;
    for (let p = 0; p < W * W; p++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const x = p % W, y = (p / W) | 0;
      px[3 * p] = (120 + 90 * Math.sin((x + k) / 21) + (s >>> 29)) & 255;
      px[3 * p + 1] = (100 + 70 * Math.cos((y - k) / 15) + ((s >>> 25) & 7)) & 255;
      px[3 * p + 2] = (80 + 50 * Math.sin((x + y) / 33) + ((s >>> 21) & 7)) & 255;
    }
    const f = path.join(dir, 'img', `f_${k}.jpg`);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    await sharp(px, { raw: { width: W, height: W, channels: 3 } }).jpeg({ quality: 90 }).toFile(f);
    files.push(f);
  }
  return files;
}

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[v.length >> 1];

const PIL = `
import sys, time, json, glob
from PIL import Image
from torchvision import transforms
files, sizes, rounds = sorted(glob.glob(sys.argv[1] + '/*.jpg')), [int(s) for s in sys.argv[2].split(',')], int(sys.argv[3])
def load(f):
    with open(f, 'rb') as fh:
        return Image.open(fh).convert('RGB')
out = {'decode': [], **{str(s): [] for s in sizes}}
for r in range(rounds):
    t = time.process_time()
    for f in files: load(f)
    out['decode'].append((time.process_time() - t) * 1e3 / len(files))
    for s in sizes:
        tf = transforms.Compose([transforms.Resize((s, s), antialias=True), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
        t = time.process_time()
        for f in files: tf(load(f))
        out[str(s)].append((time.process_time() - t) * 1e3 / len(files))
print(json.dumps({k: sorted(v)[len(v) // 2] for k, v in out.items()}))
`;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-decode-bench-'));
try {
  const files = await makeJpegs(root);
  const decoded: RgbImage[] = [];
  const dec: number[] = [];
  const turboDec: number[] = [];
  const turbo = await turboJpeg();
  const bytes = files.map((f) => fs.readFileSync(f));
  const ours: Record<number, number[]> = {};
  const planar: Record<number, number[]> = {};
  for (let r = 0; r < rounds; r++) {
    let t = cpuMs();
    decoded.length = 0;
    for (let k = 0; k < files.length; k++) decoded.push(await decodeWithSharp(bytes[k], files[k]));
    dec.push((cpuMs() - t) / files.length);
    if (turbo) {
      t = cpuMs();
      for (let k = 0; k < files.length; k++) await decodeImageBuffer(bytes[k], files[k]);
      turboDec.push((cpuMs() - t) / files.length);
    }
    for (const s of sizes) {
      t = cpuMs();
      for (const img of decoded) toCHWBytes(img, s);
      (ours[s] ??= []).push((cpuMs() - t) / files.length);
      // The float path rounded to bytes: the same bytes, the way they were made before the fused resize.
      t = cpuMs();
      for (const img of decoded) chwToRgb(toCHWFloat(img, s), s, s);
      (planar[s] ??= []).push((cpuMs() - t) / files.length);
    }
  }
  const pool = new DecodePool(cores);
  const poolRate: Record<number, number> = {};
  try {
    await Promise.all(files.slice(0, 2 * cores).map((f) => pool.decode(f, sizes[0]))); // start-up outside the timing
    for (const s of sizes) {
      const rates: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const t0 = performance.now();
        await Promise.all(files.map((f) => pool.decode(f, s)));
        rates.push(files.length / ((performance.now() - t0) / 1000));
      }
      poolRate[s] = median(rates);
    }
  } finally {
    await pool.close();
  }
  const py = torchPython();
  let pil: Record<string, number> | null = null;
  if (py) {
    const r = spawnSync(py, ['-c', PIL, path.join(root, 'img'), sizes.join(','), String(rounds)], { encoding: 'utf8' });
    if (r.status === 0) pil = JSON.parse(r.stdout.trim().split('\n').pop() as string) as Record<string, number>;
    else if (!json) console.log(`PIL failed: ${(r.stderr || '').trim().split('\n').pop()}`);
  }
  const rows = sizes.map((s) => ({
    size: s,
    sharpDecodeMs: median(dec),
    turboDecodeMs: turbo ? median(turboDec) : null,
    resizeMs: median(ours[s]),
    planarResizeMs: median(planar[s]),
    oursMs: (turbo ? median(turboDec) : median(dec)) + median(ours[s]),
    pilDecodeMs: pil?.decode ?? null,
    torchvisionMs: pil?.[String(s)] ?? null,
    poolImgS: Math.round(poolRate[s]),
  }));
  if (json) {
    for (const r of rows) console.log(JSON.stringify(r));
  } else {
    console.log(`${count} JPEGs (320x320), ${rounds} rounds, medians of CPU ms per image; ${cores} cores; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    const f = (v: number | null): string => (v === null ? '-' : v.toFixed(2));
    if (!turbo) console.log('libturbojpeg not loaded: "turbo decode" is "-" and "ours total" uses sharp\'s decode');
    console.log(table(['size', 'turbo decode', 'sharp decode', 'toCHWBytes', 'float path', 'ours total', 'PIL decode', 'PIL+torchvision total', 'pool img/s'],
      rows.map((r) => [r.size, f(r.turboDecodeMs), f(r.sharpDecodeMs), f(r.resizeMs), f(r.planarResizeMs), f(r.oursMs), f(r.pilDecodeMs), f(r.torchvisionMs), r.poolImgS])));
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}

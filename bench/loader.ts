// Loader throughput: images/s from JPEG files into device tensors, ours next to PyTorch's DataLoader
// on the same files in the same run. The consumer does no work: ours makes each batch's input tensor
// (bytes uploaded, converted/normalised/flipped by the WGSL kernel: train/batch-input.ts) and frees it;
// PyTorch's loop only counts the batches of ImageFolder + PIL (Resize antialias, RandomHorizontalFlip,
// ToTensor). Cold: our decoded cache is empty (decode + resize + write the shards); warm: it is full.
// PyTorch has no cache, so both modes compare with the same PyTorch epoch (OS page cache warm).
// Workers: 0 = everything on the main thread (our decode inline, PyTorch num_workers=0); N = the core
// count (our decode pool's threads, PyTorch's num_workers).
// Usage: npx tsx bench/loader.ts [--images N] [--sizes 64,256] [--batch 32] [--epochs E] [--workers 0,C]
//                                 [--no-torch] [--dir D] [--json]
//   --images N   JPEGs made per class (320x320, quality 90; default 500, so 1000 in all)
//   --epochs E   warm epochs of ours and epochs of PyTorch; the best is kept (default 2)
//   --workers    the worker counts to run (default 0 and the core count C)
//   --no-torch   skip PyTorch (its columns print '-')
//   --dir D      make the JPEGs in D and keep them (reused by a later run with the same --dir)
// Also prints where the warm limit is, per size: each stage of a warm batch alone (memcpy for scale,
// the host's shard reads from shards held in memory and, for comparison, with none held (a pread per
// image), the upload through the staging ring, the convert kernel) in GB/s of image bytes and the images/s it
// allows, next to the warm targets (4,000 img/s at 256 px, 40,000 at 64 px) and the GB/s they need,
// the stages in series, and which stage binds.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { torchPython, table } from './util.js';
import { initDevice, closeDevice, queue, fromArray, convertOnDevice } from '../src/tensor/index.js';
import { unitConvertReady } from '../src/tensor/ops/convert.js';
import { uploadBytes } from '../src/tensor/ops/convert-upload.js';
import { setShardMemoryBudget } from '../src/data/shard-memory.js';
import { openDataset } from '../src/data/datasets.js';
import { DataLoader, conversionTable } from '../src/data/loader.js';
import { closeShardCaches } from '../src/data/decoded.js';
import { setDecodeThreads } from '../src/data/decode-pool.js';
import { batchInput } from '../src/train/batch-input.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const perClass = Number(flag('images') ?? 500);
const sizes = (flag('sizes') ?? '64,256').split(',').map(Number);
const batch = Number(flag('batch') ?? 32);
const epochs = Number(flag('epochs') ?? 2);
const json = args.includes('--json');
const noTorch = args.includes('--no-torch');
const cores = os.availableParallelism();
const log = (m: string): void => {
  if (!json) console.log(m);
};

/** Face-sized JPEGs with smooth structure and noise, so decode costs what a photo's does. */
async function makeJpegs(root: string): Promise<void> {
  const W = 320;
  let k = 0;
  for (const cls of ['real', 'fake']) {
    const dir = path.join(root, 'train', cls);
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < perClass; i++, k++) {
      const px = Buffer.alloc(W * W * 3);
      let s = (k * 2654435761) >>> 0;
      for (let y = 0; y < W; y++) {
        for (let x = 0; x < W; x++) {
          s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
          const o = 3 * (y * W + x);
          const r = Math.hypot(x - W / 2, y - W / 2) / W;
          px[o] = (128 + 100 * Math.cos(r * 9 + k) + (s >>> 28)) & 255;
          px[o + 1] = (96 + 80 * Math.sin(x / 17 + k) + ((s >>> 24) & 15)) & 255;
          px[o + 2] = (64 + 60 * Math.cos(y / 23 - k) + ((s >>> 20) & 15)) & 255;
        }
      }
      await sharp(px, { raw: { width: W, height: W, channels: 3 } }).jpeg({ quality: 90 }).toFile(path.join(dir, `face_${k}.jpg`));
    }
  }
}

/** The bench folder at `size`, opened as a run opens it (once; its epochs share the cache's index). */
function open(root: string, size: number): ReturnType<typeof openDataset> {
  return openDataset(root, { size, warn: () => undefined });
}

/**
 * One epoch of ours into device tensors: images/s. With `host` only, the batches are assembled (shard
 * reads into the batch's bytes) and handed back, never uploaded: the host's share of a warm epoch.
 */
async function oursEpoch(d: Awaited<ReturnType<typeof openDataset>>, size: number, epoch: number, host = false): Promise<number> {
  const loader = new DataLoader(d.train, { batchSize: batch, seed: 1, flip: true });
  // The table-free kernel's one-time self-check (a process runs it once per side, in the background)
  // is not part of an epoch.
  await unitConvertReady(size);
  const t0 = performance.now();
  let n = 0;
  for await (const b of loader.epoch(epoch)) {
    if (host) b.pixels?.recycle?.();
    else {
      batchInput(b).dispose();
      await queue.endStep();
    }
    n += b.n;
  }
  await queue.sync();
  return n / ((performance.now() - t0) / 1000);
}

const TORCH = `
import sys, time, json, torch
from torchvision import datasets, transforms
root, size, workers, batch, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tf = transforms.Compose([transforms.Resize((size, size), antialias=True), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
dl = torch.utils.data.DataLoader(datasets.ImageFolder(root, tf), batch_size=batch, shuffle=True, num_workers=workers)
best = 0.0
for e in range(epochs):
    t = time.perf_counter(); n = 0
    for x, y in dl:
        n += x.shape[0]
    best = max(best, n / (time.perf_counter() - t))
print(json.dumps({"imgS": best}))
`;

function torchEpochs(py: string, root: string, size: number, workers: number): number | null {
  const r = spawnSync(py, ['-c', TORCH, path.join(root, 'train'), String(size), String(workers), String(batch), String(epochs)], { encoding: 'utf8' });
  if (r.status !== 0) {
    log(`PyTorch failed: ${(r.stderr || '').trim().split('\n').pop()}`);
    return null;
  }
  return (JSON.parse(r.stdout.trim().split('\n').pop() as string) as { imgS: number }).imgS;
}

interface Row {
  size: number;
  mode: 'cold' | 'warm';
  workers: number;
  oursImgS: number;
  torchImgS: number | null;
  ratio: number | null;
}

/**
 * Bandwidths that bound the warm path, on one batch of the size, in bytes of uint8 images per second:
 * host memcpy; the upload (with a 4-byte copy out of the buffer, so a command is submitted and Dawn's
 * staging copy runs); and the convert kernel alone (on bytes uploaded before; it reads them and writes
 * four times as many). Device work runs as the loop runs it (endStep after each batch), ten batches
 * per sync, best of three rounds, the stages interleaved in each round.
 */
async function limits(size: number): Promise<{ memcpy: number; upload: number; convert: number }> {
  const bytes = batch * 3 * size * size;
  const src = Buffer.alloc(bytes, 7);
  const dst = Buffer.alloc(bytes);
  const words = new Uint32Array(src.buffer, src.byteOffset, bytes / 4);
  const w = fromArray(words, [bytes / 4], 'u32');
  const f = fromArray(Uint32Array.from({ length: batch }, (_, i) => i & 1), [batch], 'u32');
  const t = fromArray(conversionTable(undefined), [768]);
  const sink = fromArray(new Uint32Array(1), [1], 'u32');
  // The loader's table is byte / 255 (no normalisation): the table-free kernel runs where it is exact.
  const unit = await unitConvertReady(size);
  const stages: Array<[string, () => void, boolean]> = [
    ['memcpy', () => void src.copy(dst), false],
    ['upload', () => {
      const u = uploadBytes(src, bytes);
      queue.copy(u.buf, 0, sink.buf.buffer, 0, 4);
      u.dispose();
    }, true],
    ['convert', () => convertOnDevice(w, f, t, batch, size, unit).dispose(), true],
  ];
  const best: Record<string, number> = {};
  for (let round = 0; round < 3; round++) {
    for (const [name, run, device] of stages) {
      const reps = device ? 10 : 50;
      await queue.sync();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) {
        run();
        if (device) await queue.endStep();
      }
      await queue.sync();
      best[name] = Math.min(best[name] ?? Infinity, (performance.now() - t0) / 1000 / reps);
    }
  }
  [w, f, t, sink].forEach((x) => x.dispose());
  return { memcpy: bytes / best.memcpy, upload: bytes / best.upload, convert: bytes / best.convert };
}

const TARGET: Record<number, number> = { 64: 40000, 256: 4000 };

/** The limit rows of one size: each stage's GB/s and images/s beside the target; the slowest binds. */
function limitRows(size: number, l: Awaited<ReturnType<typeof limits>>, hostImgS: { memory: number; disk: number }, warmImgS: number): Array<Array<string | number>> {
  const per = 3 * size * size;
  const target = TARGET[size];
  const gb = (imgS: number): string => ((imgS * per) / 1e9).toFixed(2);
  const stages: Array<[string, number]> = [['shard reads (host)', hostImgS.memory], ['upload', l.upload / per], ['convert kernel', l.convert / per]];
  const serial = 1 / stages.reduce((a, [, r]) => a + 1 / r, 0);
  const slowest = stages.reduce((a, b) => (b[1] < a[1] ? b : a));
  const row = (name: string, imgS: number, note = ''): Array<string | number> =>
    [size, name, gb(imgS), Math.round(imgS), target ?? '-', target ? gb(target) : '-', target ? (imgS >= target ? 'yes' : `no (${(imgS / target).toFixed(2)}x)`) : '-', note];
  return [
    row('memcpy (scale)', l.memcpy / per),
    row('shard reads, no copy in memory', hostImgS.disk, 'TICKETLAB_CACHE_MEM=0: a pread per image'),
    ...stages.map(([name, r]) => row(name, r, name === slowest[0] ? 'binds' : '')),
    row('stages in series', serial, 'one after another on the same cores'),
    row('measured warm epoch', warmImgS),
  ];
}

const dev = await initDevice();
const py = torchPython();
// --dir D: the JPEGs go to D and stay there (made once; a later run reuses them), e.g. for ticketlab profile --data D.
const keepDir = flag('dir');
const root = keepDir ? path.resolve(keepDir) : fs.mkdtempSync(path.join(os.tmpdir(), 'tl-loader-bench-'));
try {
  log(`making ${2 * perClass} JPEGs (320x320) in ${root} ...`);
  if (!keepDir || !fs.existsSync(path.join(root, 'train'))) await makeJpegs(root);
  log(`adapter: ${dev.info.description || dev.info.device}; ${cores} cores; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; PyTorch: ${py ?? 'not found (set TICKETLAB_PYTHON)'}`);
  const rows: Row[] = [];
  const limitTable: Array<Array<string | number>> = [];
  const workerCounts = (flag('workers') ?? `0,${cores}`).split(',').map(Number);
  for (const size of sizes) {
    let bestWarm = 0;
    const bestHost = { memory: 0, disk: 0 };
    for (const workers of workerCounts) {
      await setDecodeThreads(workers);
      fs.rmSync(path.join(root, '.ticketlab-cache'), { recursive: true, force: true });
      closeShardCaches();
      // Cold, then the warm epochs, as one run does them: one dataset, the cache it filled.
      const run = await open(root, size);
      const cold = await oursEpoch(run, size, 0);
      const torch = py && !noTorch ? torchEpochs(py, root, size, workers) : null;
      let warm = 0;
      for (let e = 1; e <= epochs; e++) {
        warm = Math.max(warm, await oursEpoch(run, size, e));
        bestHost.memory = Math.max(bestHost.memory, await oursEpoch(run, size, 100 + e, true));
      }
      // The same host epochs with no shard held in memory (a fresh cache object, budget 0).
      closeShardCaches();
      setShardMemoryBudget(0);
      const disk = await open(root, size);
      for (let e = 1; e <= epochs; e++) bestHost.disk = Math.max(bestHost.disk, await oursEpoch(disk, size, 200 + e, true));
      closeShardCaches();
      setShardMemoryBudget(null);
      bestWarm = Math.max(bestWarm, warm);
      for (const [mode, ours] of [['cold', cold], ['warm', warm]] as const) {
        rows.push({ size, mode, workers, oursImgS: Math.round(ours), torchImgS: torch === null ? null : Math.round(torch), ratio: torch ? Math.round((ours / torch) * 100) / 100 : null });
      }
    }
    limitTable.push(...limitRows(size, await limits(size), bestHost, bestWarm));
  }
  if (json) {
    for (const r of rows) console.log(JSON.stringify(r));
  } else {
    console.log(table(['size', 'mode', 'workers', 'ours img/s', 'PyTorch img/s', 'ratio'], rows.map((r) => [r.size, r.mode, r.workers, r.oursImgS, r.torchImgS ?? '-', r.ratio ?? '-'])));
    console.log(`\nwarm limits (batches of ${batch}): each stage alone, in GB/s of uint8 image bytes and the images/s it allows (the convert kernel writes 4 bytes of float per byte it reads)`);
    console.log(table(['size', 'stage', 'GB/s', 'img/s', 'target img/s', 'target GB/s', 'meets', ''], limitTable));
    console.log(`load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  }
} finally {
  if (!keepDir) fs.rmSync(root, { recursive: true, force: true });
  await setDecodeThreads(0);
  closeDevice();
}

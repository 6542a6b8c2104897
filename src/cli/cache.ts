// `ticketlab prepare`: fills a dataset's decoded cache (data/shard-cache.ts) ahead of a run, on every
// core, so the first epoch of a study reads shards like every later one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { availableParallelism } from 'node:os';
import { openDataset, warmCache, type Dataset } from '../data/datasets.js';
import { fillDecodedCache, isPixelDataset, type FillResult } from '../data/decoded.js';
import { RECORD_BYTES } from '../data/shard-cache.js';
import { defaultInputSize } from '../nn/models/index.js';
import { Progress } from '../util/progress.js';
import { CACHE_FLAGS, CACHE_FLAGS_HELP, applyCacheFlags, num } from './flags.js';
import { parseFlags, type Command } from './args.js';

function folderBytes(dir: string): number {
  let total = 0;
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const st = fs.statSync(path.join(dir, name));
    total += st.isFile() ? st.size : 0;
  }
  return total;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export const prepareDataCommand: Command = {
  name: 'prepare',
  summary: "decode and resize a dataset once into its cache at the training size (every core)",
  help: `ticketlab prepare --data DIR --size S [--crop MODE] [--cache DIR] [--quiet]

Decodes every image of the train, validation and test splits, resizes it to S x S (antialiased
bilinear, rounded to bytes) and writes it to the dataset's decoded cache, on every core, with a
progress bar. Training, evaluation, IMP levels, controls, transfer and sweep units read these shards
instead of decoding the JPEGs again; without prepare the first epoch fills the cache instead.
Already cached images are skipped (a second prepare only checks sizes and modification times).
FaceForensics++ frames and OpenForensics faces are cached too (after extraction and cropping; an
OpenForensics photo is decoded once for all its faces).

  --data DIR          the dataset root (image folder, FaceForensics++ or OpenForensics release)
  --size PX           training side (default: meso4's default for the data, 256 for real datasets)
  --crop MODE         as in 'ticketlab train' (FF++ and OpenForensics)
${CACHE_FLAGS_HELP}  --quiet             no progress bar

The cache folder, its format and how to move or clear it: docs/data.md.`,
  async run(args) {
    const { values } = parseFlags(args, {
      data: { type: 'string' }, size: { type: 'string' }, crop: { type: 'string', default: 'face' }, quiet: { type: 'boolean', default: false }, ...CACHE_FLAGS,
    }, 'prepare');
    if (!values.data) throw new Error('--data is required (the dataset root to prepare)');
    if (values['no-cache']) throw new Error('--no-cache leaves nothing for prepare to do; give --cache DIR or neither');
    applyCacheFlags(values);
    const size = values.size === undefined ? defaultInputSize('meso4', values.data) : num(values, 'size', { int: true, min: 8, max: 4096 });
    const crop = String(values.crop);
    if (crop !== 'face' && crop !== 'centre' && crop !== 'box') throw new Error(`--crop '${crop}' is not one of face, box, centre`);
    if (values.data.startsWith('synthetic')) throw new Error('--data synthetic is rendered on the fly; there is nothing to cache');
    const warnings: string[] = [];
    const warn = (m: string): void => {
      warnings.push(m);
      process.stderr.write(`warning: ${m}\n`);
    };
    const d = await openDataset(values.data, { size, crop, warn }).catch((e: Error) => {
      throw new Error(`--data ${values.data}: ${e.message.split('\n')[0]}`);
    });
    const splits: Array<[string, Dataset]> = [['train', d.train], ['val', d.val], ['test', d.test]];
    const t0 = performance.now();
    let images = 0;
    const totals: FillResult = { images: 0, decoded: 0, cached: 0, skipped: 0 };
    let cacheDir: string | null = null;
    for (const [name, ds] of splits) {
      if (ds.length() === 0) continue;
      const bar = values.quiet ? null : new Progress({ total: ds.length(), label: `prepare ${name}`, unit: 'img' });
      if (isPixelDataset(ds)) {
        if (!ds.cache) throw new Error(`${ds.name}: no decoded cache is open`);
        cacheDir = ds.cache.dir;
        const r = await fillDecodedCache(ds, { concurrency: 2 * availableParallelism(), onProgress: (n) => bar?.tick(n), warn });
        for (const k of ['images', 'decoded', 'cached', 'skipped'] as const) totals[k] += r[k];
      } else {
        const r = await warmCache(ds, { concurrency: 2 * availableParallelism(), onProgress: () => bar?.tick(1), warn });
        totals.images += r.done;
        totals.decoded += r.done - r.skipped;
        totals.skipped += r.skipped;
      }
      bar?.done();
      images += ds.length();
    }
    const secs = (performance.now() - t0) / 1000;
    const lines = [`${d.name} at ${size}x${size}: ${totals.images} images, ${totals.decoded} decoded now, ${totals.cached} already cached, ${totals.skipped} unreadable (skipped) in ${secs.toFixed(1)} s (${(images / Math.max(secs, 1e-9)).toFixed(0)} img/s on ${availableParallelism()} cores)`];
    if (cacheDir) lines.push(`cache: ${cacheDir} (${mib(folderBytes(cacheDir))}, ${3 * size * size + RECORD_BYTES} bytes per image: pixels and an index record)`);
    console.log(lines.join('\n'));
    return 0;
  },
};

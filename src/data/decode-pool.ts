// Decode + resize on every core: a process-wide pool of worker threads (one per core) running
// decode-worker.ts. The numerics are toCHWBytes' wherever it runs, so a pooled decode gives the same
// bytes as one on the main thread. Workers are unref'd: an idle pool never keeps a process alive.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { decodeToBytes, UnreadableImageError, type BoxCrop } from './image.js';
import { turboJpeg } from './jpeg-turbo.js';
import type { DecodeReady, DecodeReply, DecodeRequest } from './decode-worker.js';

/** Images one worker has in flight at once: one resizing while the next decodes on libvips' threads. */
const PER_WORKER = 2;

// A worker starts without the parent's loader hooks. From dist/ it imports the JavaScript directly.
// From the TypeScript sources (tsx, vitest) the worker module and what it imports are bundled once per
// process into one JavaScript module (esbuild, tsx's compiler) that each worker evaluates: registering
// tsx in every worker instead costs each one a loader thread and module loading through it before its
// first image (150-400 ms of CPU more for two workers, on the loaded 2-core machine). Without esbuild,
// each worker registers tsx's ESM loader (its CommonJS twin cannot load from an eval'd worker).
let bundled: string | null | undefined;

/** The source each worker evaluates (exported for the tests). */
export function workerBootstrap(): string {
  const worker = new URL(import.meta.url.replace(/decode-pool\.(ts|js)$/, 'decode-worker.$1'));
  if (!worker.pathname.endsWith('.ts')) return `await import(${JSON.stringify(worker.href)});`;
  if (bundled === undefined) bundled = bundle(worker); // null (no esbuild) is remembered too
  if (bundled) return bundled;
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  return `const { register } = await import(${JSON.stringify(tsx)}); register();\nawait import(${JSON.stringify(worker.href)});`;
}

/**
 * decode-worker.ts and its imports as one ES module, its packages (sharp, koffi) imported by absolute URL
 * (an eval'd worker has no folder to resolve a bare name from); null when esbuild cannot. koffi may be
 * absent: its import is then left bare, fails in the worker, and JPEGs decode through sharp.
 */
function bundle(worker: URL): string | null {
  try {
    const require = createRequire(import.meta.url);
    const esbuild = require('esbuild') as typeof import('esbuild');
    let code = esbuild.buildSync({
      entryPoints: [fileURLToPath(worker)], bundle: true, write: false, format: 'esm', platform: 'node',
      target: 'node20', external: ['sharp', 'koffi'], logLevel: 'silent',
    }).outputFiles[0].text;
    const url = (name: string): string | null => {
      try {
        return JSON.stringify(pathToFileURL(require.resolve(name)).href);
      } catch {
        return null;
      }
    };
    const sharp = url('sharp');
    const koffi = url('koffi');
    if (!sharp) return null;
    code = code.replace(/(from\s*|import\(\s*)"sharp"/g, `$1${sharp}`);
    if (koffi) code = code.replace(/(from\s*|import\(\s*)"koffi"/g, `$1${koffi}`);
    return code.includes(sharp) ? code : null;
  } catch {
    return null;
  }
}

/** An image from the pool, with the CRC-32 of its bytes when a worker computed it (whole images). */
export interface Decoded {
  pixels: Uint8Array;
  crc?: number;
}

interface Job {
  req: DecodeRequest;
  resolve: (d: Decoded) => void;
  reject: (e: Error) => void;
}

interface Slot {
  w: Worker;
  busy: number;
  /** resolves at the worker's first message (DecodeReady), or never if it fails first */
  ready: Promise<void>;
}

export class DecodePool {
  private readonly workers: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly inflight = new Map<number, { job: Job; slot: Slot }>();
  private nextId = 1;

  constructor(readonly threads = availableParallelism()) {}

  private spawn(): Slot {
    // Workers stay quiet when libjpeg-turbo is missing; the main thread says it once, for all of them.
    if (this.workers.length === 0) void turboJpeg();
    const code = workerBootstrap();
    // A bundled or built worker needs none of the parent's loader flags (tsx's --import/--require):
    // inheriting them costs each worker a TypeScript loader before its first image.
    const execArgv = /register\(\)/.test(code) ? undefined : [];
    const w = new Worker(code, { eval: true, type: 'module', execArgv } as ConstructorParameters<typeof Worker>[1]);
    // Held until it is up (start() may be waiting on it), then unref'd while idle.
    const slot: Slot = {
      w, busy: 0, ready: new Promise<void>((resolve) => w.once('message', () => {
        if (slot.busy === 0) w.unref();
        resolve();
      })),
    };
    w.on('message', (m: DecodeReply | DecodeReady) => {
      if (!('ready' in m)) this.done(m);
    });
    w.on('error', (e) => this.fail(slot, e));
    this.workers.push(slot);
    return slot;
  }

  /**
   * Starts every worker now and resolves once each has loaded its modules, so that the first images
   * do not wait for threads to boot (a worker that fails to start is dropped, as on any failure).
   */
  async start(): Promise<void> {
    while (this.workers.length < this.threads) this.spawn();
    await Promise.race([Promise.all(this.workers.map((s) => s.ready)), new Promise((r) => setTimeout(r, 30_000).unref())]);
  }

  /**
   * CHW bytes of `file` at size x size (with `boxes`: of each box's crop, one after another; see
   * decodeToBytes); UnreadableImageError for a file that cannot be decoded.
   */
  decode(file: string, size: number, boxes?: BoxCrop[]): Promise<Uint8Array> {
    return this.decodeChecked(file, size, boxes).then((d) => d.pixels);
  }

  /**
   * `decode`, with the checksum the worker computed (the decoded cache stores it; the main thread then
   * need not read the bytes again). Returned beside the bytes, not looked up by them: a WeakMap keyed
   * by each image made every later warm epoch's host work about 10% slower (measured at 64 px).
   */
  decodeChecked(file: string, size: number, boxes?: BoxCrop[]): Promise<Decoded> {
    // No threads: on the main thread (the bench's num_workers=0 row).
    if (this.threads === 0) return decodeToBytes(file, size, boxes).then((pixels) => ({ pixels }));
    return new Promise((resolve, reject) => {
      this.queue.push({ req: { id: this.nextId++, file, size, ...(boxes ? { boxes } : {}) }, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.workers.find((s) => s.busy < PER_WORKER && s.busy === Math.min(...this.workers.map((x) => x.busy)));
      if (!slot || slot.busy > 0) slot = this.workers.length < this.threads ? this.spawn() : slot;
      if (!slot || slot.busy >= PER_WORKER) return;
      const job = this.queue.shift() as Job;
      slot.busy++;
      if (slot.busy === 1) slot.w.ref();
      this.inflight.set(job.req.id, { job, slot });
      slot.w.postMessage(job.req);
    }
  }

  private done(m: DecodeReply): void {
    const f = this.inflight.get(m.id);
    if (!f) return;
    this.inflight.delete(m.id);
    if (--f.slot.busy === 0) f.slot.w.unref();
    if (m.ok) f.job.resolve(m.crc === undefined ? { pixels: m.pixels } : { pixels: m.pixels, crc: m.crc });
    else f.job.reject(m.unreadable ? Object.assign(new UnreadableImageError(m.path, ''), { message: m.message }) : new Error(m.message));
    this.pump();
  }

  private fail(slot: Slot, e: Error): void {
    const i = this.workers.indexOf(slot);
    if (i >= 0) this.workers.splice(i, 1);
    for (const [id, f] of this.inflight) {
      if (f.slot !== slot) continue;
      this.inflight.delete(id);
      f.job.reject(new Error(`decode worker failed: ${e.message.split('\n')[0]}`));
    }
    this.pump();
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0);
    await Promise.all(ws.map((s) => s.w.terminate()));
  }
}

let shared: DecodePool | null = null;

/** The process's pool (created on first use; one thread per core unless setDecodeThreads said otherwise). */
export function decodePool(): DecodePool {
  shared ??= new DecodePool();
  return shared;
}

/**
 * Replaces the process's pool by one with `threads` workers (0: decode on the main thread), started
 * now: it resolves once they are up.
 */
export async function setDecodeThreads(threads: number): Promise<void> {
  if (!Number.isInteger(threads) || threads < 0) throw new Error(`decode threads must be an integer >= 0, got ${threads}`);
  const old = shared;
  shared = new DecodePool(threads);
  await old?.close();
  await shared.start();
}

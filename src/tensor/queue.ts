// Command batching: every op records its dispatch into one shared compute pass; the batch is
// submitted only when the host needs a value (readback) or calls flush().
//
// Why: on Dawn a dispatch inside an open pass costs ~5.6 us, a pass per dispatch ~8.4 us and a submit
// per dispatch ~19 us (the in-pass figure is docs/gpu.md's H100 anchor); a training step has hundreds
// of dispatches.
//
// Uniform parameters live in an arena of 64 KiB uniform buffers: each dispatch takes the next aligned
// slot, the bytes are staged on the host and written with one writeBuffer per arena buffer just before
// submit. writeBuffer is ordered before the submitted commands, so every slot holds its value when its
// dispatch runs; after submit the arena is reused from the start.
//
// Bytes moved: while counting (startCount) or profiling, every dispatch is also charged the bytes of
// the storage ranges it binds, once per binding: a 'read' binding (read-only storage) as bytes read, a
// 'write' binding (read_write storage) as bytes written only, whether or not the kernel also reads it
// (accumulating kernels do; most only store). A whole-buffer binding is charged what its holder asked
// the pool for, not the size class. Uniform parameters are not counted. This is the compulsory traffic
// of each kernel (every byte it must touch at least once), independent of the device and of caches.
import { device, onDeviceClose } from './device.js';
import type { Grid, Kernel, BindingKind } from '../shaders/kernel.js';
import type { PooledBuffer } from './pool.js';
import { currentLayer, currentPhase, type DispatchTag, type DispatchTagArg, type Phase } from './trace.js';

const ARENA_BYTES = 65536;
/** Submit on our own after this many dispatches so memory held by a long batch stays bounded. */
const MAX_DISPATCHES_PER_BATCH = 4096;
/** Steps the host may run ahead of the device (CommandQueue.endStep). */
export const STEPS_IN_FLIGHT = 3;

interface ArenaBuffer {
  gpu: GPUBuffer;
  host: Uint8Array;
  used: number;
}

interface PipelineEntry {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

export interface LaunchBinding {
  buffer: PooledBuffer;
  /** Byte offset/size of the bound range; whole buffer by default. */
  offset?: number;
  size?: number;
}

/** Per-kernel GPU time collected while profiling (see CommandQueue.startProfile). */
export interface KernelProfile {
  name: string;
  calls: number;
  /** Total GPU time in milliseconds (timestamp queries). */
  ms: number;
}

/** Dispatches and bytes moved of one (layer, phase, op, variant, shape, kernel) while counting. */
export interface DispatchCount {
  layer: string;
  phase: Phase;
  op: string;
  variant: string;
  shape: string;
  /** Kernel name (WGSL entry's label). */
  kernel: string;
  calls: number;
  /** Dense FLOPs of all calls (0 when the launcher did not say). */
  flops: number;
  /** Bytes of the read-only storage bindings of all calls. */
  bytesRead: number;
  /** Bytes of the read_write storage bindings of all calls (see the header). */
  bytesWritten: number;
}

/** GPU time of the dispatches of one (layer, phase, op, variant, shape) while profiling. */
export interface DispatchProfile extends DispatchCount {
  ms: number;
}

const PROFILE_SLOTS = 4096;

type RowKey = Omit<DispatchCount, 'calls' | 'flops' | 'bytesRead' | 'bytesWritten'>;

interface Stamp {
  key: string;
  row: RowKey;
  flops: number;
  bytesRead: number;
  bytesWritten: number;
}

interface Profiler {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  names: Stamp[];
  totals: Map<string, DispatchProfile>;
}

/** Bytes of each binding of a dispatch, split by access (see the header). */
function bytesOf(k: Kernel, buffers: readonly LaunchBinding[]): { bytesRead: number; bytesWritten: number } {
  let bytesRead = 0;
  let bytesWritten = 0;
  let bi = 0;
  for (const kind of k.bindings) {
    if (kind === 'uniform') continue;
    const b = buffers[bi++];
    const off = b.offset ?? 0;
    const n = b.size ?? Math.max(0, Math.min(b.buffer.used, b.buffer.bytes) - off);
    if (kind === 'read') bytesRead += n;
    else bytesWritten += n;
  }
  return { bytesRead, bytesWritten };
}

/** Adds one stamped dispatch to a table of rows. */
function addCount(totals: Map<string, DispatchCount>, st: Stamp): DispatchCount {
  let t = totals.get(st.key);
  if (!t) totals.set(st.key, (t = { ...st.row, calls: 0, flops: 0, bytesRead: 0, bytesWritten: 0 }));
  t.calls++;
  t.flops += st.flops;
  t.bytesRead += st.bytesRead;
  t.bytesWritten += st.bytesWritten;
  return t;
}

function stampOf(k: Kernel, buffers: readonly LaunchBinding[], tag: DispatchTag | undefined): Stamp {
  const row = {
    layer: tag?.layer ?? currentLayer(),
    phase: tag?.phase ?? currentPhase(),
    op: tag?.op ?? k.name,
    variant: tag?.variant ?? k.name,
    shape: tag?.shape ?? '',
    kernel: k.name,
  };
  return { key: `${row.layer}|${row.phase}|${row.op}|${row.variant}|${row.shape}|${row.kernel}`, row, flops: tag?.flops ?? 0, ...bytesOf(k, buffers) };
}

export class CommandQueue {
  private encoder: GPUCommandEncoder | null = null;
  private profiler: Profiler | null = null;
  private counter: Map<string, DispatchCount> | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private arenas: ArenaBuffer[] = [];
  private arenaIdx = 0;
  private pipelines = new Map<string, PipelineEntry>();
  private pending = 0;
  /** Id of the batch being recorded; batches with smaller ids are submitted. */
  batch = 1;
  dispatches = 0;
  submits = 0;

  get submittedBatch(): number {
    return this.batch - 1;
  }

  private pipelineFor(k: Kernel): PipelineEntry {
    const key = k.code;
    let e = this.pipelines.get(key);
    if (e) return e;
    const gpu = device().gpu;
    const entries: GPUBindGroupLayoutEntry[] = k.bindings.map((b: BindingKind, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: b === 'read' ? 'read-only-storage' : b === 'write' ? 'storage' : 'uniform' },
    }));
    const layout = gpu.createBindGroupLayout({ label: k.name, entries });
    const module = gpu.createShaderModule({ label: k.name, code: k.code });
    const pipeline = gpu.createComputePipeline({
      label: k.name,
      layout: gpu.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: k.entry ?? 'main' },
    });
    e = { pipeline, layout };
    this.pipelines.set(key, e);
    return e;
  }

  /** Compiles a kernel now (tests use this to surface WGSL errors with a message). */
  async compile(k: Kernel): Promise<void> {
    const gpu = device().gpu;
    gpu.pushErrorScope('validation');
    this.pipelineFor(k);
    const err = await gpu.popErrorScope();
    if (err) {
      this.pipelines.delete(k.code);
      throw new Error(`kernel ${k.name}: ${err.message}`);
    }
  }

  private paramSlot(bytes: Uint8Array): { buffer: GPUBuffer; offset: number; size: number } {
    const align = device().limits.minUniformBufferOffsetAlignment ?? 256;
    const size = Math.max(16, Math.ceil(bytes.byteLength / 16) * 16);
    let a = this.arenas[this.arenaIdx];
    if (a && a.used + size > ARENA_BYTES) {
      this.arenaIdx++;
      a = this.arenas[this.arenaIdx];
    }
    if (!a) {
      a = {
        gpu: device().gpu.createBuffer({
          size: ARENA_BYTES,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        }),
        host: new Uint8Array(ARENA_BYTES),
        used: 0,
      };
      this.arenas[this.arenaIdx] = a;
    }
    const offset = a.used;
    a.host.set(bytes, offset);
    a.used = Math.ceil((offset + size) / align) * align;
    return { buffer: a.gpu, offset, size };
  }

  private ensurePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.encoder ??= device().gpu.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  /**
   * Records one dispatch. `buffers` follow the kernel's storage bindings in order; `params` (if the
   * kernel has a uniform binding) are its bytes.
   */
  dispatch(k: Kernel, buffers: readonly LaunchBinding[], params: ArrayBufferView | null, grid: Grid, tag?: DispatchTagArg): void {
    if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) return;
    const { pipeline, layout } = this.pipelineFor(k);
    const entries: GPUBindGroupEntry[] = [];
    let bi = 0;
    for (let i = 0; i < k.bindings.length; i++) {
      if (k.bindings[i] === 'uniform') {
        if (!params) throw new Error(`kernel ${k.name}: needs params`);
        const slot = this.paramSlot(new Uint8Array(params.buffer, params.byteOffset, params.byteLength));
        entries.push({ binding: i, resource: { buffer: slot.buffer, offset: slot.offset, size: slot.size } });
      } else {
        const b = buffers[bi++];
        if (!b) throw new Error(`kernel ${k.name}: binding ${i} has no buffer`);
        b.buffer.lastBatch = this.batch;
        entries.push({
          binding: i,
          resource: { buffer: b.buffer.buffer, offset: (b.buffer.offset ?? 0) + (b.offset ?? 0), size: b.size ?? b.buffer.bytes - (b.offset ?? 0) },
        });
      }
    }
    if (bi !== buffers.length) throw new Error(`kernel ${k.name}: got ${buffers.length} buffers, binds ${bi}`);
    const bindGroup = device().gpu.createBindGroup({ layout, entries });
    const prof = this.profiler;
    if (prof && prof.names.length * 2 + 2 > PROFILE_SLOTS) this.flush();
    const stamp = prof || this.counter ? stampOf(k, buffers, typeof tag === 'function' ? tag() : tag) : null;
    if (stamp && this.counter) addCount(this.counter, stamp);
    // While profiling, each dispatch gets its own pass so timestamps bracket exactly one kernel.
    const pass = prof && stamp ? this.profiledPass(prof, stamp) : this.ensurePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    if (prof) {
      pass.end();
      this.pass = null;
    }
    this.dispatches++;
    if (++this.pending >= MAX_DISPATCHES_PER_BATCH) this.flush();
  }

  /** @internal Records a buffer-to-buffer copy (ends the open compute pass). */
  copy(src: PooledBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder ??= device().gpu.createCommandEncoder();
    src.lastBatch = this.batch;
    this.encoder.copyBufferToBuffer(src.buffer, (src.offset ?? 0) + srcOffset, dst, dstOffset, bytes);
    this.pending++;
  }

  private profiledPass(prof: Profiler, name: Stamp): GPUComputePassEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder ??= device().gpu.createCommandEncoder();
    const i = prof.names.length;
    prof.names.push(name);
    return this.encoder.beginComputePass({
      timestampWrites: { querySet: prof.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
    });
  }

  /**
   * Starts collecting per-kernel GPU time with timestamp queries. Each dispatch then runs in its own
   * pass, which costs a little: use it to see where time goes, not to measure end-to-end speed.
   */
  startProfile(): void {
    if (!device().hasTimestamps) throw new Error('profiling needs the timestamp-query feature, which this adapter lacks');
    this.flush();
    const gpu = device().gpu;
    this.profiler = {
      querySet: gpu.createQuerySet({ type: 'timestamp', count: PROFILE_SLOTS }),
      resolve: gpu.createBuffer({ size: PROFILE_SLOTS * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
      names: [],
      totals: new Map(),
    };
  }

  /**
   * Starts counting dispatches and the bytes their bindings move (the header says how), per (layer,
   * phase, op, variant, shape, kernel). Needs no timestamp queries and changes nothing about how work
   * is recorded, so it runs on every adapter and costs only the host-side bookkeeping.
   */
  startCount(): void {
    this.counter = new Map();
  }

  get counting(): boolean {
    return this.counter !== null;
  }

  /** Stops counting and returns the rows, in first-dispatch order. */
  stopCount(): DispatchCount[] {
    const c = this.counter;
    if (!c) throw new Error('stopCount() without startCount()');
    this.counter = null;
    return [...c.values()];
  }

  get profiling(): boolean {
    return this.profiler !== null;
  }

  /** Stops profiling and returns kernels by total GPU time, largest first. */
  async stopProfile(): Promise<KernelProfile[]> {
    const byName = new Map<string, KernelProfile>();
    for (const r of await this.stopProfileRows()) {
      const t = byName.get(r.kernel) ?? { name: r.kernel, calls: 0, ms: 0 };
      t.calls += r.calls;
      t.ms += r.ms;
      byName.set(r.kernel, t);
    }
    return [...byName.values()].sort((a, b) => b.ms - a.ms);
  }

  /** Stops profiling and returns GPU time per (layer, phase, op, variant, shape), in dispatch order. */
  async stopProfileRows(): Promise<DispatchProfile[]> {
    const prof = this.profiler;
    if (!prof) throw new Error('stopProfile() without startProfile()');
    this.flush();
    await this.collect(prof);
    this.profiler = null;
    prof.querySet.destroy();
    prof.resolve.destroy();
    return [...prof.totals.values()];
  }

  private pendingProfiles: Promise<void>[] = [];

  private async collect(_prof: Profiler): Promise<void> {
    await Promise.all(this.pendingProfiles);
    this.pendingProfiles = [];
  }

  /** Records the timestamp resolve; the returned function maps the results once submitted. */
  private readProfile(prof: Profiler): (() => void) | null {
    const n = prof.names.length;
    if (!n || !this.encoder) return null;
    const names = prof.names.splice(0);
    const gpu = device().gpu;
    this.encoder.resolveQuerySet(prof.querySet, 0, 2 * n, prof.resolve, 0);
    const staging = gpu.createBuffer({ size: 2 * n * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.encoder.copyBufferToBuffer(prof.resolve, 0, staging, 0, 2 * n * 8);
    return () => this.pendingProfiles.push(
      (async () => {
        await staging.mapAsync(GPUMapMode.READ);
        const ts = new BigUint64Array(staging.getMappedRange().slice(0));
        staging.destroy();
        names.forEach((st, i) => {
          let t = prof.totals.get(st.key);
          if (!t) prof.totals.set(st.key, (t = { ...st.row, calls: 0, ms: 0, flops: 0, bytesRead: 0, bytesWritten: 0 }));
          addCount(prof.totals, st);
          const d = ts[2 * i + 1] - ts[2 * i];
          t.ms += d > 0n ? Number(d) / 1e6 : 0;
        });
      })(),
    );
  }


  /** Submits everything recorded so far. Cheap when nothing is pending. */
  flush(): void {
    if (!this.encoder) return;
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    const afterSubmit = this.profiler ? this.readProfile(this.profiler) : null;
    const gpu = device().gpu;
    for (let i = 0; i <= this.arenaIdx && i < this.arenas.length; i++) {
      const a = this.arenas[i];
      if (a.used) gpu.queue.writeBuffer(a.gpu, 0, a.host, 0, Math.min(a.used, ARENA_BYTES));
      a.used = 0;
    }
    this.arenaIdx = 0;
    gpu.queue.submit([this.encoder.finish()]);
    afterSubmit?.();
    this.encoder = null;
    this.pending = 0;
    this.batch++;
    this.submits++;
  }

  /** Completion of the last few steps (endStep), oldest first. */
  private steps: { done: boolean; promise: Promise<void> }[] = [];

  /** Steps submitted and not yet finished by the GPU. */
  get stepsInFlight(): number {
    return this.steps.filter((s) => !s.done).length;
  }

  /**
   * Ends a training (or evaluation) step: submits it, and while more than `bound` steps are in flight,
   * waits for the oldest to finish. Without this the host records a whole epoch far ahead of the device
   * (progress bars and Ctrl-C then describe recorded, not computed, work, and every recorded step holds
   * its buffers). Three, not two: on lavapipe a bound of 2 cost up to 40% on Meso-4 256 px batch 8
   * (the wait seems to return about a step late), 3 measured no slower than unbounded (bench/in-flight.ts).
   */
  async endStep(bound = STEPS_IN_FLIGHT): Promise<void> {
    this.flush();
    const entry = { done: false, promise: Promise.resolve() };
    entry.promise = device().gpu.queue.onSubmittedWorkDone().then(() => {
      entry.done = true;
    });
    this.steps.push(entry);
    while (this.steps.length > Math.max(1, bound)) await this.steps.shift()!.promise;
    this.steps = this.steps.filter((s) => !s.done);
    const err = device().takeError();
    if (err) throw new Error(`GPU error in queued work: ${err}`);
  }

  /** Resolves when the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    this.flush();
    await device().gpu.queue.onSubmittedWorkDone();
    const err = device().takeError();
    if (err) throw new Error(`GPU error in queued work: ${err}`);
  }

  reset(): void {
    this.steps = [];
    this.profiler = null;
    this.counter = null;
    this.pendingProfiles = [];
    this.encoder = null;
    this.pass = null;
    this.arenas = [];
    this.arenaIdx = 0;
    this.pipelines.clear();
    this.pending = 0;
  }
}

export const queue = new CommandQueue();
onDeviceClose(() => queue.reset());

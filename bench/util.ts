// Timing helpers for benchmarks.
//
// GPU time: when the device has 'timestamp-query', a kernel is timed by recording `reps` dispatches
// in one compute pass of our own with beginning/end-of-pass timestamp writes (the shared queue's
// pass has no timestamp hook). One pass spans many dispatches and we report the pass time divided by
// reps. (Dawn's timestamp quantisation, a few tens of microseconds, is switched off by device.ts.)
// Without timestamps: wall clock around queue.sync() of `reps` dispatches, after warm-up.
import { spawnSync } from 'node:child_process';
import { device } from '../src/tensor/device.js';
import { queue, type LaunchBinding } from '../src/tensor/queue.js';
import type { Grid, Kernel } from '../src/shaders/kernel.js';

export interface Dispatch {
  kernel: Kernel;
  buffers: readonly LaunchBinding[];
  params: ArrayBufferView | null;
  grid: Grid;
}

interface Prepared {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  grid: Grid;
  uniform: GPUBuffer | null;
}

const pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();

/** Builds pipeline + bind group for a dispatch (same binding rules as the queue). */
export async function prepare(d: Dispatch): Promise<Prepared> {
  const gpu = device().gpu;
  let e = pipelines.get(d.kernel.code);
  if (!e) {
    gpu.pushErrorScope('validation');
    const layout = gpu.createBindGroupLayout({
      label: d.kernel.name,
      entries: d.kernel.bindings.map((b, i) => ({
        binding: i,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: b === 'read' ? 'read-only-storage' : b === 'write' ? 'storage' : 'uniform' },
      })),
    });
    const module = gpu.createShaderModule({ label: d.kernel.name, code: d.kernel.code });
    const pipeline = await gpu.createComputePipelineAsync({
      label: d.kernel.name,
      layout: gpu.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: d.kernel.entry ?? 'main' },
    });
    const err = await gpu.popErrorScope();
    if (err) throw new Error(`kernel ${d.kernel.name}: ${err.message}`);
    e = { pipeline, layout };
    pipelines.set(d.kernel.code, e);
  }
  let uniform: GPUBuffer | null = null;
  const entries: GPUBindGroupEntry[] = [];
  let bi = 0;
  for (let i = 0; i < d.kernel.bindings.length; i++) {
    if (d.kernel.bindings[i] === 'uniform') {
      const p = d.params!;
      const size = Math.max(16, Math.ceil(p.byteLength / 16) * 16);
      uniform = gpu.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      gpu.queue.writeBuffer(uniform, 0, p.buffer, p.byteOffset, p.byteLength);
      entries.push({ binding: i, resource: { buffer: uniform } });
    } else {
      const b = d.buffers[bi++];
      entries.push({ binding: i, resource: { buffer: b.buffer.buffer, offset: b.offset ?? 0, size: b.size ?? b.buffer.bytes - (b.offset ?? 0) } });
    }
  }
  return { pipeline: e.pipeline, bindGroup: gpu.createBindGroup({ layout: e.layout, entries }), grid: d.grid, uniform };
}

export interface Timing {
  /** Seconds per repetition of the dispatch list (best trial). */
  seconds: number;
  method: 'timestamp' | 'wallclock';
  /**
   * Process CPU seconds (user + system, all threads) per repetition, best trial. On a software
   * device (lavapipe runs the kernels on this process's threads) this is the work done, and stays
   * meaningful when other processes compete for the cores; on a real GPU it is just host overhead.
   */
  cpuSeconds: number;
}

function record(pass: GPUComputePassEncoder, list: Prepared[], reps: number): void {
  for (let r = 0; r < reps; r++) {
    for (const p of list) {
      pass.setPipeline(p.pipeline);
      pass.setBindGroup(0, p.bindGroup);
      pass.dispatchWorkgroups(p.grid[0], p.grid[1], p.grid[2]);
    }
  }
}

let lastCpu = 0;

async function runOnce(list: Prepared[], reps: number, useTs: boolean): Promise<number> {
  await queue.sync();
  const c0 = process.cpuUsage();
  const t = await runTimed(list, reps, useTs);
  const c = process.cpuUsage(c0);
  lastCpu = (c.user + c.system) / 1e6;
  return t;
}

async function runTimed(list: Prepared[], reps: number, useTs: boolean): Promise<number> {
  const gpu = device().gpu;
  const enc = gpu.createCommandEncoder();
  if (!useTs) {
    const t0 = performance.now();
    const pass = enc.beginComputePass();
    record(pass, list, reps);
    pass.end();
    gpu.queue.submit([enc.finish()]);
    await gpu.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / 1000;
  }
  const qs = gpu.createQuerySet({ type: 'timestamp', count: 2 });
  const resolve = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  record(pass, list, reps);
  pass.end();
  enc.resolveQuerySet(qs, 0, 2, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
  gpu.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  qs.destroy();
  resolve.destroy();
  read.destroy();
  return Number(t[1] - t[0]) / 1e9;
}

/**
 * Times a list of dispatches (run in order, as one repetition). Warm-up first, then doubles the
 * repetition count until one measured pass takes >= minSeconds (or maxReps), then takes the best of
 * `trials` such passes.
 */
export async function timeDispatches(
  dispatches: Dispatch[],
  o: { minSeconds?: number; maxReps?: number; trials?: number; timestamps?: boolean } = {},
): Promise<Timing> {
  const list = await Promise.all(dispatches.map(prepare));
  const useTs = (o.timestamps ?? true) && device().hasTimestamps;
  const minSeconds = o.minSeconds ?? 0.2;
  const maxReps = o.maxReps ?? 256;
  await runOnce(list, 1, false); // warm-up (pipeline compile, caches)
  let reps = 1;
  let t = await runOnce(list, reps, useTs);
  while (t < minSeconds && reps < maxReps) {
    reps = Math.min(maxReps, reps * Math.max(2, Math.ceil(minSeconds / Math.max(t, 1e-6))));
    t = await runOnce(list, reps, useTs);
  }
  let best = t / reps;
  let bestCpu = lastCpu / reps;
  for (let i = 1; i < (o.trials ?? 3); i++) {
    best = Math.min(best, (await runOnce(list, reps, useTs)) / reps);
    bestCpu = Math.min(bestCpu, lastCpu / reps);
  }
  for (const p of list) p.uniform?.destroy();
  return { seconds: best, method: useTs ? 'timestamp' : 'wallclock', cpuSeconds: bestCpu };
}

/** Fixed-width table printing. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const w = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padStart(w[i])).join('  ');
  return [line(header), w.map((x) => '-'.repeat(x)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/**
 * A Python interpreter that can import torch, or null. The PATH's python3 first (a GPU server's), then
 * the system one (Debian's python3-torch installs there even when pyenv shadows it).
 */
export function torchPython(): string | null {
  for (const py of [process.env.TICKETLAB_PYTHON, 'python3', '/usr/bin/python3']) {
    if (!py) continue;
    const probe = spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore' });
    if (probe.status === 0) return py;
  }
  return null;
}

/**
 * Whole steps of several variants in turns (order alternating each round, after one warm-up each):
 * wall-clock and process CPU ms per step, by variant. CPU time stays meaningful on a loaded software
 * adapter, whose kernels run on this process's threads.
 */
export async function interleavedSteps<V extends string>(variants: readonly V[], run: (v: V) => void, rounds: number): Promise<{ wall: Map<V, number[]>; cpu: Map<V, number[]> }> {
  const wall = new Map<V, number[]>(variants.map((v) => [v, []]));
  const cpu = new Map<V, number[]>(variants.map((v) => [v, []]));
  for (const v of variants) {
    run(v);
    await queue.sync();
  }
  for (let i = 0; i < rounds; i++) {
    for (const v of i % 2 ? [...variants].reverse() : variants) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      run(v);
      await queue.sync();
      wall.get(v)!.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.get(v)!.push((c.user + c.system) / 1000);
    }
  }
  return { wall, cpu };
}

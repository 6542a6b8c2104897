// Training-step speed of the detectors: ours next to PyTorch on the same machine, in one run.
// Ours: forward + BCE-with-logits + backward + Adam on the WebGPU device (warm-up, then the mean of
// N steps between queue syncs). PyTorch: the same models (scripts/make-fixtures.py defines them with
// our exact layers), fp32, TF32 off, on CUDA when available, else on the CPU; timed in a child process.
// Usage: npx tsx bench/train-step.ts [--steps N] [--only meso4,cnn5,...] [--in-flight K] [--baseline [KERNELS]]
//                                   [--rounds R]
// --in-flight K: steps the host may run ahead (queue.endStep, as training does; default 3; 0 = record
// every step before waiting once, the old unbounded behaviour).
//   --baseline [KERNELS] also time ours with this kernel override (TICKETLAB_KERNELS syntax, e.g. the
//                       kernels of an earlier release), interleaved with the planner's choice, and print
//                       both ratios: a before/after from one run. Without KERNELS (or 'unfused'): the
//                       unfused kernels (fused:unfused, tensor/ops/fused.ts), with the fused speedup.
//                       Each configuration's dispatches and MiB moved per training step (the queue's
//                       counting: bytes of the bindings, device-independent) are printed beside it.
//   --rounds R          repeat ours R times per workload (interleaved with the baseline), and PyTorch R
//                       times, and keep each configuration's fastest step time: the least-disturbed one
//                       on a shared machine.
// Workloads default to the study's sizes on a GPU and to small ones on a software adapter (lavapipe).
// "cpu ms" is this process's CPU time per step (all threads): on lavapipe the kernels run on our
// threads, so it measures the work done even when other processes compete for the cores.
import { torchPython } from './util.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { initDevice, closeDevice, tidy, queue } from '../src/tensor/index.js';
import { createModel, parseModelName } from '../src/nn/models/index.js';
import { noGrad } from '../src/autograd/tape.js';
import { trainStep } from './step.js';
import { parseKernelOverride, setKernelOverride } from '../src/tensor/plan.js';
import { tuneCachePath, useTuneCache } from '../src/tensor/tune.js';

interface Workload {
  model: string;
  size: number;
  batch: number;
}

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const steps = Number(flag('steps') ?? 5);
const only = flag('only')?.split(',');
const inFlight = Number(flag('in-flight') ?? 3);
// A bare --baseline (or 'unfused') compares against the unfused kernels.
const baselineArg = args.includes('--baseline') ? (flag('baseline') ?? '') : undefined;
const baseline = baselineArg === undefined ? undefined : !baselineArg || baselineArg.startsWith('--') || baselineArg === 'unfused' ? 'fused:unfused' : baselineArg;
const rounds = Number(flag('rounds') ?? 1);
if (baseline) parseKernelOverride(baseline, '--baseline');

const dev = await initDevice();
// TICKETLAB_TUNE=1: the tuned kernels of this adapter (fill them with 'ticketlab tune' first).
if (process.env.TICKETLAB_TUNE === '1') console.log(`tuned kernels: ${useTuneCache()} shape classes from ${tuneCachePath()}`);
const soft = dev.info.isSoftware;
const all: Workload[] = soft
  ? [
      { model: 'meso4', size: 64, batch: 32 },
      { model: 'meso4', size: 256, batch: 8 },
      { model: 'cnn5', size: 64, batch: 32 },
      { model: 'resnet18', size: 64, batch: 8 },
    ]
  : [
      { model: 'meso4', size: 256, batch: 32 },
      { model: 'meso4', size: 256, batch: 128 },
      { model: 'cnn5', size: 256, batch: 128 },
      { model: 'resnet18', size: 224, batch: 32 },
      { model: 'resnet18', size: 224, batch: 128 },
    ];
const work = all.filter((w) => !only || only.includes(w.model));

interface Timing {
  trainMs: number;
  inferMs: number;
  /** Process CPU time per training step (ours only). */
  cpuMs?: number;
  /** Dispatches and bytes (read + written) of one training step (ours only; queue.startCount). */
  dispatches?: number;
  bytes?: number;
}

async function ours(w: Workload): Promise<Timing> {
  const m = createModel(parseModelName(w.model), { size: w.size, seed: 0 });
  const { step, x: xt, dispose } = trainStep(m, w.size, w.batch);
  step();
  await queue.sync();
  let t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < steps; i++) {
    step();
    if (inFlight > 0) await queue.endStep(inFlight);
  }
  await queue.sync();
  const trainMs = (performance.now() - t0) / steps;
  const c = process.cpuUsage(c0);
  const cpuMs = (c.user + c.system) / 1000 / steps;
  m.eval();
  const infer = () => noGrad(() => tidy(() => void m.forward(xt)));
  infer();
  await queue.sync();
  t0 = performance.now();
  for (let i = 0; i < steps; i++) infer();
  await queue.sync();
  const inferMs = (performance.now() - t0) / steps;
  m.train();
  queue.startCount();
  step();
  const counted = queue.stopCount();
  await queue.sync();
  dispose();
  m.dispose();
  const dispatches = counted.reduce((a, r) => a + r.calls, 0);
  const bytes = counted.reduce((a, r) => a + r.bytesRead + r.bytesWritten, 0);
  return { trainMs, inferMs, cpuMs, dispatches, bytes };
}

/** Best of `rounds` interleaved runs of each configuration (null: the planner's own choice). */
async function oursRounds(w: Workload): Promise<{ mine: Timing; base: Timing | null }> {
  let mine: Timing | null = null;
  let base: Timing | null = null;
  const better = (a: Timing | null, b: Timing) => (!a || b.trainMs < a.trainMs ? b : a);
  for (let r = 0; r < rounds; r++) {
    if (baseline) {
      setKernelOverride(baseline);
      base = better(base, await ours(w));
      setKernelOverride(null);
    }
    mine = better(mine, await ours(w));
  }
  return { mine: mine!, base };
}

const PY = String.raw`
import sys, json, time, importlib.util, torch
spec = importlib.util.spec_from_file_location('fx', 'scripts/make-fixtures.py')
fx = importlib.util.module_from_spec(spec); spec.loader.exec_module(fx)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
work, steps = json.loads(sys.argv[1]), int(sys.argv[2])
def build(name, size):
    return fx.MODELS[name](size)
def sync():
    if dev == 'cuda': torch.cuda.synchronize()
out = []
for w in work:
    torch.manual_seed(0)
    m = build(w['model'], w['size']).to(dev).float().train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    x = torch.rand(w['batch'], 3, w['size'], w['size'], device=dev)
    y = (torch.arange(w['batch'], device=dev) % 2).float().view(-1, 1)
    lossf = torch.nn.BCEWithLogitsLoss()
    def step():
        opt.zero_grad(set_to_none=True)
        lossf(m(x), y).backward()
        opt.step()
    for _ in range(2): step()
    sync(); t0 = time.perf_counter()
    for _ in range(steps): step()
    sync(); train = (time.perf_counter() - t0) / steps * 1000
    m.eval()
    with torch.no_grad():
        m(x); sync(); t0 = time.perf_counter()
        for _ in range(steps): m(x)
        sync(); infer = (time.perf_counter() - t0) / steps * 1000
    out.append({'trainMs': train, 'inferMs': infer})
name = torch.cuda.get_device_name(0) if dev == 'cuda' else 'CPU (%d threads)' % torch.get_num_threads()
print(json.dumps({'device': name, 'torch': torch.__version__, 'results': out}))
`;

function pytorch(ws: Workload[]): { device: string; torch: string; results: Timing[] } | null {
  const py = torchPython();
  if (py) {
    const r = spawnSync(py, ['-c', PY, JSON.stringify(ws), String(steps)], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) {
      console.error(`PyTorch run failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
      return null;
    }
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  }
  return null;
}

if (!fs.existsSync('scripts/make-fixtures.py')) throw new Error('run from the project root');
// PyTorch runs right after ours for each workload (a child process per workload), so both sides of a
// ratio see about the same machine load.
const rows: { w: Workload; t: Timing; b: Timing | null; p: Timing | null }[] = [];
let pt: { device: string; torch: string } | null = null;
for (const w of work) {
  const { mine, base } = await oursRounds(w);
  let best: Timing | null = null;
  for (let r = 0; r < rounds; r++) {
    const res = pytorch([w]);
    if (!res) break;
    pt = res;
    if (!best || res.results[0].trainMs < best.trainMs) best = res.results[0];
  }
  rows.push({ w, t: mine, b: base, p: best });
}
closeDevice();
console.log(`ours: ${dev.info.device || dev.info.description}${soft ? ' (software)' : ''}; PyTorch: ${pt ? `${pt.torch} on ${pt.device}` : 'not available'}; ${steps} steps each`);
if (baseline) console.log(`baseline: ours with kernels ${baseline}`);
console.log(`workload                   ours train ms  cpu ms  img/s   infer img/s  disp   MiB | torch train ms  img/s   infer img/s | train ratio (ours/torch speed)${baseline ? ' | baseline train ms  cpu ms  ratio  disp   MiB | speedup' : ''}`);
const traffic = (t: Timing) => `${String(t.dispatches).padStart(5)} ${(t.bytes! / 2 ** 20).toFixed(1).padStart(5)}`;
rows.forEach(({ w, t, b, p }) => {
  const ips = (ms: number) => ((w.batch * 1000) / ms).toFixed(0).padStart(7);
  const name = `${w.model} ${w.size}px b${w.batch}`.padEnd(26);
  const mine = `${t.trainMs.toFixed(1).padStart(13)} ${t.cpuMs!.toFixed(0).padStart(7)} ${ips(t.trainMs)} ${ips(t.inferMs).padStart(13)} ${traffic(t)}`;
  const theirs = p ? `${p.trainMs.toFixed(1).padStart(14)} ${ips(p.trainMs)} ${ips(p.inferMs).padStart(13)}` : '             -       -             -';
  const ratio = p ? `${(p.trainMs / t.trainMs).toFixed(3)}x` : '-';
  const base = b
    ? ` | ${b.trainMs.toFixed(1).padStart(17)} ${b.cpuMs!.toFixed(0).padStart(7)} ${p ? `${(p.trainMs / b.trainMs).toFixed(3)}x` : '-'} ${traffic(b)} | ${(b.trainMs / t.trainMs).toFixed(3)}x (cpu ${(b.cpuMs! / t.cpuMs!).toFixed(3)}x)`
    : '';
  console.log(`${name} ${mine} | ${theirs} | ${ratio.padStart(6)}${base}`);
});

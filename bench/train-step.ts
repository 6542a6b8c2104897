// Training-step speed of the detectors: ours next to PyTorch on the same machine, in one run.
// Ours: forward + BCE-with-logits + backward + Adam on the WebGPU device (warm-up, then the mean of
// N steps between queue syncs). PyTorch: the same models (scripts/make-fixtures.py defines them with
// our exact layers), fp32, TF32 off, on CUDA when available, else on the CPU; timed in a child process.
// Usage: npx tsx bench/train-step.ts [--steps N] [--only meso4,cnn5,...] [--in-flight K]
// --in-flight K: steps the host may run ahead (queue.endStep, as training does; default 3; 0 = record
// every step before waiting once, the old unbounded behaviour).
// Workloads default to the study's sizes on a GPU and to small ones on a software adapter (lavapipe).
import { torchPython } from './util.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { initDevice, closeDevice, tidy, queue } from '../src/tensor/index.js';
import { createModel } from '../src/nn/models/index.js';
import { noGrad } from '../src/autograd/tape.js';
import { trainStep } from './step.js';
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
}

async function ours(w: Workload): Promise<Timing> {
  const m = createModel(w.model, { size: w.size, seed: 0 });
  const { step, x: xt, dispose } = trainStep(m, w.size, w.batch);
  step();
  await queue.sync();
  let t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    step();
    if (inFlight > 0) await queue.endStep(inFlight);
  }
  await queue.sync();
  const trainMs = (performance.now() - t0) / steps;
  m.eval();
  const infer = () => noGrad(() => tidy(() => void m.forward(xt)));
  infer();
  await queue.sync();
  t0 = performance.now();
  for (let i = 0; i < steps; i++) infer();
  await queue.sync();
  const inferMs = (performance.now() - t0) / steps;
  dispose();
  m.dispose();
  return { trainMs, inferMs };
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
const rows: { w: Workload; t: Timing }[] = [];
for (const w of work) rows.push({ w, t: await ours(w) });
closeDevice();
const pt = pytorch(work);
console.log(`ours: ${dev.info.device || dev.info.description}${soft ? ' (software)' : ''}; PyTorch: ${pt ? `${pt.torch} on ${pt.device}` : 'not available'}; ${steps} steps each`);
console.log('workload                   ours train ms  img/s   infer img/s | torch train ms  img/s   infer img/s | train ratio (torch/ours speed)');
rows.forEach(({ w, t }, i) => {
  const p = pt?.results[i];
  const ips = (ms: number) => ((w.batch * 1000) / ms).toFixed(0).padStart(7);
  const name = `${w.model} ${w.size}px b${w.batch}`.padEnd(26);
  const mine = `${t.trainMs.toFixed(1).padStart(13)} ${ips(t.trainMs)} ${ips(t.inferMs).padStart(13)}`;
  const theirs = p ? `${p.trainMs.toFixed(1).padStart(14)} ${ips(p.trainMs)} ${ips(p.inferMs).padStart(13)}` : '             -       -             -';
  const ratio = p ? `${(p.trainMs / t.trainMs).toFixed(3)}x` : '-';
  console.log(`${name} ${mine} | ${theirs} | ${ratio}`);
});

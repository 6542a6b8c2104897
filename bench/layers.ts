// Times conv2d forward, backward-input and backward-weight on the conv layers of Meso-4 (256x256,
// 'same' padding) and ResNet-18 (224x224), printing GFLOP/s per layer and per model. If PyTorch is
// importable (python3 -c 'import torch'), the same layers are timed there too (fp32, TF32 off, CUDA
// if present, else CPU) in a child process, and the ratio ours / PyTorch time is printed.
//
//   npx tsx bench/layers.ts [--batch N] [--reps N] [--models meso,resnet] [--no-torch]
// Defaults: batch 32 and 20 reps on a GPU; batch 2 and 2 reps on a software adapter (lavapipe, about
// 15 s on 2 cores). Each pass is run once untimed first (pipeline compile), then `reps` times between
// two queue.sync() calls; ms are wall-clock per pass. Set TICKETLAB_KERNELS=conv:tiled (or conv:direct) to
// force an implementation (default: the planner's, direct on software adapters, tiled on GPUs).
import { spawnSync } from 'node:child_process';
import { torchPython } from './util.js';
import { closeDevice, fromArray, initDevice, queue, tidy, type Tensor } from '../src/tensor/index.js';
import {
  conv2dBackwardInput,
  conv2dBackwardWeight,
  conv2dForward,
  conv2dGeometry,
  type Conv2dOptions,
} from '../src/tensor/ops/conv.js';

interface Layer {
  model: string;
  name: string;
  cin: number;
  cout: number;
  k: number;
  size: number;
  stride: number;
  /** 'same' (Keras) or a symmetric pad. */
  pad: 'same' | number;
  /** How many times the layer occurs in the model. */
  count: number;
}

const LAYERS: Layer[] = [
  { model: 'meso', name: 'conv1 3->8 3x3 @256', cin: 3, cout: 8, k: 3, size: 256, stride: 1, pad: 'same', count: 1 },
  { model: 'meso', name: 'conv2 8->8 5x5 @128', cin: 8, cout: 8, k: 5, size: 128, stride: 1, pad: 'same', count: 1 },
  { model: 'meso', name: 'conv3 8->16 5x5 @64', cin: 8, cout: 16, k: 5, size: 64, stride: 1, pad: 'same', count: 1 },
  { model: 'meso', name: 'conv4 16->16 5x5 @32', cin: 16, cout: 16, k: 5, size: 32, stride: 1, pad: 'same', count: 1 },
  { model: 'resnet', name: 'conv1 3->64 7x7 s2 @224', cin: 3, cout: 64, k: 7, size: 224, stride: 2, pad: 3, count: 1 },
  { model: 'resnet', name: 'layer1 64->64 3x3 @56', cin: 64, cout: 64, k: 3, size: 56, stride: 1, pad: 1, count: 4 },
  { model: 'resnet', name: 'layer2.0 64->128 3x3 s2 @56', cin: 64, cout: 128, k: 3, size: 56, stride: 2, pad: 1, count: 1 },
  { model: 'resnet', name: 'layer2 128->128 3x3 @28', cin: 128, cout: 128, k: 3, size: 28, stride: 1, pad: 1, count: 3 },
  { model: 'resnet', name: 'layer2 ds 64->128 1x1 s2 @56', cin: 64, cout: 128, k: 1, size: 56, stride: 2, pad: 0, count: 1 },
  { model: 'resnet', name: 'layer3.0 128->256 3x3 s2 @28', cin: 128, cout: 256, k: 3, size: 28, stride: 2, pad: 1, count: 1 },
  { model: 'resnet', name: 'layer3 256->256 3x3 @14', cin: 256, cout: 256, k: 3, size: 14, stride: 1, pad: 1, count: 3 },
  { model: 'resnet', name: 'layer3 ds 128->256 1x1 s2 @28', cin: 128, cout: 256, k: 1, size: 28, stride: 2, pad: 0, count: 1 },
  { model: 'resnet', name: 'layer4.0 256->512 3x3 s2 @14', cin: 256, cout: 512, k: 3, size: 14, stride: 2, pad: 1, count: 1 },
  { model: 'resnet', name: 'layer4 512->512 3x3 @7', cin: 512, cout: 512, k: 3, size: 7, stride: 1, pad: 1, count: 3 },
  { model: 'resnet', name: 'layer4 ds 256->512 1x1 s2 @14', cin: 256, cout: 512, k: 1, size: 14, stride: 2, pad: 0, count: 1 },
];

type Pass = 'fwd' | 'bwd_input' | 'bwd_weight';
const PASSES: Pass[] = ['fwd', 'bwd_input', 'bwd_weight'];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function randomHost(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s >>> 8) / 2 ** 23 - 1;
  }
  return a;
}

async function timeOurs(l: Layer, batch: number, reps: number): Promise<Record<Pass, number>> {
  const opts: Conv2dOptions = { stride: l.stride, padding: l.pad };
  const xShape = [batch, l.cin, l.size, l.size];
  const wShape = [l.cout, l.cin, l.k, l.k];
  const g = conv2dGeometry(xShape, wShape, opts);
  const x = fromArray(randomHost(batch * l.cin * l.size * l.size, 1), xShape);
  const w = fromArray(randomHost(l.cout * l.cin * l.k * l.k, 2), wShape);
  const b = fromArray(randomHost(l.cout, 3), [l.cout]);
  const dy = fromArray(randomHost(batch * l.cout * g.oh * g.ow, 4), [batch, l.cout, g.oh, g.ow]);
  const run: Record<Pass, () => Tensor> = {
    fwd: () => conv2dForward(x, w, b, opts),
    bwd_input: () => conv2dBackwardInput(dy, w, xShape, opts),
    bwd_weight: () => conv2dBackwardWeight(dy, x, wShape, opts),
  };
  const out = {} as Record<Pass, number>;
  for (const pass of PASSES) {
    tidy(() => {
      run[pass]();
    }); // warm-up: pipeline compile
    await queue.sync();
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) {
      tidy(() => {
        run[pass]();
      });
    }
    await queue.sync();
    out[pass] = (performance.now() - t0) / reps / 1000;
  }
  for (const t of [x, w, b, dy]) t.dispose();
  return out;
}

const TORCH_SCRIPT = String.raw`
import json, sys, time, torch
import torch.nn.functional as F
cfg = json.loads(sys.argv[1])
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
if dev == 'cpu':
    torch.set_num_threads(int(cfg.get('threads', 0)) or torch.get_num_threads())
def sync():
    if dev == 'cuda': torch.cuda.synchronize()
res = []
for l in cfg['layers']:
    b = cfg['batch']
    x = torch.randn(b, l['cin'], l['size'], l['size'], device=dev)
    w = torch.randn(l['cout'], l['cin'], l['k'], l['k'], device=dev)
    bias = torch.randn(l['cout'], device=dev)
    pad = l['pad']
    if pad == 'same':
        k = l['k']; s = l['stride']; n = l['size']
        out = -(-n // s); tot = max((out - 1) * s + k - n, 0)
        x_in = F.pad(x, (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2)); p = 0
    else:
        x_in = x; p = pad
    y = F.conv2d(x_in, w, bias, stride=l['stride'], padding=p)
    dy = torch.randn_like(y)
    fns = {
      'fwd': lambda: F.conv2d(x_in, w, bias, stride=l['stride'], padding=p),
      'bwd_input': lambda: torch.nn.grad.conv2d_input(x_in.shape, w, dy, stride=l['stride'], padding=p),
      'bwd_weight': lambda: torch.nn.grad.conv2d_weight(x_in, w.shape, dy, stride=l['stride'], padding=p),
    }
    r = {}
    for name, f in fns.items():
        f(); sync()
        t0 = time.perf_counter()
        for _ in range(cfg['reps']): f()
        sync()
        r[name] = (time.perf_counter() - t0) / cfg['reps']
    res.append(r)
print(json.dumps({'device': dev if dev == 'cpu' else torch.cuda.get_device_name(), 'times': res}))
`;

function timeTorch(layers: Layer[], batch: number, reps: number): { device: string; times: Record<Pass, number>[] } | null {
  const py = torchPython();
  if (!py) return null;
  const r = spawnSync(py, ['-c', TORCH_SCRIPT, JSON.stringify({ layers, batch, reps })], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) {
    console.error(`PyTorch run failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
    return null;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function flops(l: Layer, batch: number): number {
  const g = conv2dGeometry([batch, l.cin, l.size, l.size], [l.cout, l.cin, l.k, l.k], { stride: l.stride, padding: l.pad });
  return 2 * batch * g.oh * g.ow * l.cout * l.cin * l.k * l.k;
}

async function main(): Promise<void> {
  const dev = await initDevice();
  const soft = dev.info.isSoftware;
  const batch = Number(arg('batch') ?? (soft ? 2 : 32));
  const reps = Number(arg('reps') ?? (soft ? 2 : 20));
  const models = (arg('models') ?? 'meso,resnet').split(',');
  const layers = LAYERS.filter((l) => models.includes(l.model));
  console.log(`device: ${dev.info.description || dev.info.device} (${dev.info.backend}${soft ? ', software' : ''}); batch ${batch}, ${reps} reps`);
  const ours: Record<Pass, number>[] = [];
  for (const l of layers) ours.push(await timeOurs(l, batch, reps));
  closeDevice();
  const torch = process.argv.includes('--no-torch') ? null : timeTorch(layers, batch, reps);
  if (torch) console.log(`PyTorch device: ${torch.device}`);
  const pad = (s: string, n: number) => s.padEnd(n);
  const lpad = (s: string, n: number) => s.padStart(n);
  const head = `${pad('layer', 32)}${PASSES.map((p) => lpad(`${p} ms`, 15) + lpad('GFLOP/s', 9) + (torch ? lpad('x torch', 9) : '')).join('')}`;
  console.log(head);
  const totals: Record<string, { ours: Record<Pass, number>; torch: Record<Pass, number>; flop: number }> = {};
  layers.forEach((l, i) => {
    const f = flops(l, batch);
    const row = PASSES.map((p) => {
      const t = ours[i][p];
      const cell = lpad((t * 1e3).toFixed(3), 15) + lpad((f / t / 1e9).toFixed(1), 9);
      return cell + (torch ? lpad((t / torch.times[i][p]).toFixed(2), 9) : '');
    }).join('');
    console.log(`${pad(l.name, 32)}${row}`);
    const tot = (totals[l.model] ??= {
      ours: { fwd: 0, bwd_input: 0, bwd_weight: 0 },
      torch: { fwd: 0, bwd_input: 0, bwd_weight: 0 },
      flop: 0,
    });
    tot.flop += f * l.count;
    for (const p of PASSES) {
      tot.ours[p] += ours[i][p] * l.count;
      if (torch) tot.torch[p] += torch.times[i][p] * l.count;
    }
  });
  for (const [m, t] of Object.entries(totals)) {
    const all = PASSES.reduce((s, p) => s + t.ours[p], 0);
    const allT = PASSES.reduce((s, p) => s + t.torch[p], 0);
    console.log(
      `${m} all conv layers (x multiplicity), fwd+bwd: ${(all * 1e3).toFixed(2)} ms, ${((3 * t.flop) / all / 1e9).toFixed(1)} GFLOP/s` +
        (torch ? `; PyTorch ${(allT * 1e3).toFixed(2)} ms, ratio ${(all / allT).toFixed(2)}` : ''),
    );
  }
}

await main();

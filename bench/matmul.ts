// Matmul benchmark: GFLOP/s of each kernel variant on square sizes, and the ratio to PyTorch fp32
// (TF32 off) on the same machine when python3 + torch are importable.
//
//   npx tsx bench/matmul.ts [--sizes=256,512,1024] [--variants=register,shared] [--min-seconds=0.3]
//                           [--no-torch]
//
// GPU time comes from timestamp queries around a pass of repeated dispatches when the device offers
// 'timestamp-query' (see bench/util.ts), else from the wall clock around queue sync. On a software
// device (lavapipe) sizes stop at 1024 unless --sizes says otherwise, and a GFLOP per CPU-second
// column is added: lavapipe runs on this process's threads, so that column stays comparable when
// other processes compete for the cores.
import { execFileSync } from 'node:child_process';
import { closeDevice, device, initDevice } from '../src/tensor/device.js';
import { fromArray } from '../src/tensor/tensor.js';
import { planMatmul, type MatmulVariant } from '../src/tensor/ops/matmul.js';
import { table, timeDispatches } from './util.js';
import { torchPython } from './util.js';

function arg(name: string): string | undefined {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`) || x === `--${name}`);
  return a === undefined ? undefined : a.includes('=') ? a.slice(a.indexOf('=') + 1) : '';
}

interface TorchResult {
  device: string;
  gflops: Record<string, number>;
}

/** Times torch.matmul in a child process; null when python3/torch are missing. */
function torchTimes(sizes: number[]): TorchResult | null {
  const script = `
import json, sys, time
import torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
try:
    torch.set_float32_matmul_precision('highest')
except Exception:
    pass
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
def sync():
    if dev == 'cuda': torch.cuda.synchronize()
out = {}
for n in json.loads(sys.argv[1]):
    a = torch.rand(n, n, device=dev, dtype=torch.float32)
    b = torch.rand(n, n, device=dev, dtype=torch.float32)
    for _ in range(2): a @ b
    sync()
    reps, best = 1, float('inf')
    while True:
        t = time.perf_counter()
        for _ in range(reps): a @ b
        sync()
        dt = (time.perf_counter() - t) / reps
        best = min(best, dt)
        if dt * reps >= 0.3 or reps >= 1024: break
        reps *= 2
    for _ in range(2):
        t = time.perf_counter()
        for _ in range(reps): a @ b
        sync()
        best = min(best, (time.perf_counter() - t) / reps)
    out[str(n)] = 2 * n ** 3 / best / 1e9
name = torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu (%d threads)' % torch.get_num_threads()
print(json.dumps({'device': 'torch %s on %s' % (torch.__version__, name), 'gflops': out}))
`;
  const py = torchPython();
  if (!py) return null;
  try {
    const outp = execFileSync(py, ['-c', script, JSON.stringify(sizes)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    return JSON.parse(outp.trim().split('\n').pop()!) as TorchResult;
  } catch (e) {
    console.error(`PyTorch timing failed: ${(e as Error).message.split('\n')[0]}`);
    return null;
  }
}

function randomMatrix(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n * n);
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

async function main(): Promise<void> {
  const dev = await initDevice();
  const soft = dev.info.isSoftware;
  const sizes = (arg('sizes') ?? (soft ? '256,512,1024' : '256,512,1024,2048,4096')).split(',').map(Number);
  const variants = (arg('variants') ?? 'register,shared').split(',') as MatmulVariant[];
  const minSeconds = Number(arg('min-seconds') ?? (soft ? 0.5 : 0.2));
  console.log(`device: ${dev.info.description || dev.info.device} (${dev.info.vendor}, ${dev.info.architecture}${soft ? ', software' : ''})`);
  console.log(`timing: ${device().hasTimestamps ? 'timestamp queries over a pass of repeated dispatches' : 'wall clock around queue sync'}, best of 3`);
  const torch = arg('no-torch') !== undefined ? null : torchTimes(sizes);
  console.log(torch ? `reference: ${torch.device}, fp32, TF32 off` : 'reference: PyTorch not available (python3 -c "import torch" failed)');

  const rows: (string | number)[][] = [];
  for (const n of sizes) {
    const a = randomMatrix(n, n);
    const b = randomMatrix(n, n + 1);
    const A = fromArray(a, [n, n]);
    const B = fromArray(b, [n, n]);
    const sizeRows: (string | number)[][] = [];
    for (const variant of variants) {
      const plan = planMatmul(A, B, { variant });
      const t = await timeDispatches(
        plan.dispatches.map((d) => ({ kernel: plan.kernel, buffers: plan.buffers, params: d.params, grid: d.grid })),
        { minSeconds, trials: 3 },
      );
      // Spot-check 16 entries against float64 dot products (catches a broken variant on new hardware).
      const got = await plan.out.toArray();
      let err = 0;
      for (let q = 0; q < 16; q++) {
        const i = (q * 7919) % n;
        const j = (q * 104729 + 13) % n;
        let s = 0;
        let mag = 0;
        for (let k = 0; k < n; k++) {
          s += a[i * n + k] * b[k * n + j];
          mag += Math.abs(a[i * n + k] * b[k * n + j]);
        }
        err = Math.max(err, Math.abs(got[i * n + j] - s) / mag);
      }
      plan.out.dispose();
      const gflops = plan.flops / t.seconds / 1e9;
      const tile = variant === 'register' ? '16x64 (4x4)' : plan.kernel.name.includes('large') ? '128x128 (8x8)' : '64x64 (4x4)';
      const row: (string | number)[] = [n, variant, tile, (t.seconds * 1e3).toFixed(2), gflops.toFixed(2)];
      if (soft) row.push((plan.flops / t.cpuSeconds / 1e9).toFixed(2));
      row.push(err.toExponential(1));
      if (torch) {
        const tg = torch.gflops[String(n)];
        row.push(tg.toFixed(1), (gflops / tg).toFixed(3));
      }
      sizeRows.push(row);
    }
    rows.push(...sizeRows);
    A.dispose();
    B.dispose();
  }
  const header = ['n', 'variant', 'tile (per thread)', 'ms', 'GFLOP/s'];
  if (soft) header.push('GFLOP/cpu-s');
  header.push('rel err');
  if (torch) header.push('torch GFLOP/s', 'ours/torch');
  console.log();
  console.log(table(header, rows));
  closeDevice();
}

await main();

// What a plain WGSL loop reaches on this adapter: the practical FMA peak (registers only), and the cost
// of the three kinds of storage load a kernel can make on a SIMD-over-threads compiler such as lavapipe:
// uniform (same address in every thread), per-thread scalar and per-thread vec4. Hot kernels are judged
// against these numbers (bench/profile-step.ts prints their GFLOP/s).
//   npx tsx bench/peak.ts [--min-seconds=0.3]
import { closeDevice, initDevice } from '../src/tensor/device.js';
import { empty } from '../src/tensor/tensor.js';
import { GRID_BUILTINS_WGSL, type Kernel } from '../src/shaders/kernel.js';
import { table, timeDispatches } from './util.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const minSeconds = Number(arg('min-seconds') ?? 0.3);
const WG = 64;
const GROUPS = 256;
const ITERS = Number(arg("iters") ?? 2048);

interface Probe {
  name: string;
  /** Body inside `for (var k = 0u; k < p.iters; k++)`; accumulators acc0..acc{A-1} are vec4<f32>. */
  body: string;
  accs: number;
  /** FLOPs per thread per iteration. */
  flops: number;
}

function probeKernel(pr: Probe): Kernel {
  const accs = Array.from({ length: pr.accs }, (_, i) => i);
  const code = `// peak_${pr.name}
struct P { iters: u32, n: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let t = gid.x;
  let base = wid.x * ${WG}u;
  let s = f32(lid) * 1e-3;
${accs.map((i) => `  var acc${i} = vec4<f32>(s + ${i}.0);`).join('\n')}
  for (var k = 0u; k < p.iters; k++) {
${pr.body}
  }
  var r = vec4<f32>(0.0);
${accs.map((i) => `  r += acc${i};`).join('\n')}
  out[t] = r.x + r.y + r.z + r.w;
}
`;
  return { name: `peak_${pr.name}`, code, bindings: ['read', 'read', 'write', 'uniform'] };
}

const A = Number(arg("accs") ?? 8);
const accLines = (f: (i: number) => string) => Array.from({ length: A }, (_, i) => f(i)).join('\n');
const probes: Probe[] = [
  // Registers only: 8 vec4 accumulators, independent chains.
  { name: 'fma_regs', accs: A, flops: A * 8, body: accLines((i) => `    acc${i} = fma(acc${i}, vec4<f32>(0.999), vec4<f32>(1e-3));`) },
  // One uniform scalar load feeds all 32 lanes-FMAs of a thread.
  {
    name: 'uniform_load',
    accs: A,
    flops: A * 8,
    body: `    let u = src[k & 1023u];\n` + accLines((i) => `    acc${i} = fma(acc${i}, vec4<f32>(u), vec4<f32>(1e-3));`),
  },
  // One uniform vec4 load.
  {
    name: 'uniform_vec4',
    accs: A,
    flops: A * 8,
    body: `    let u = src4[k & 255u];\n` + accLines((i) => `    acc${i} = fma(acc${i}, u, vec4<f32>(1e-3));`),
  },
  // One per-thread scalar load (consecutive threads, consecutive words) per 32 FMAs.
  {
    name: 'lane_load',
    accs: A,
    flops: A * 8,
    body: `    let v = src[((k & 63u) * ${WG}u + lid + base) & 65535u];\n` + accLines((i) => `    acc${i} = fma(acc${i}, vec4<f32>(v), vec4<f32>(1e-3));`),
  },
  // One per-thread vec4 load per 32 FMAs.
  {
    name: 'lane_vec4',
    accs: A,
    flops: A * 8,
    body: `    let v = src4[((k & 63u) * ${WG}u + lid + base) & 16383u];\n` + accLines((i) => `    acc${i} = fma(acc${i}, v, vec4<f32>(1e-3));`),
  },
  // Eight per-thread scalar loads per 32 FMAs (the current direct conv's ratio).
  {
    name: 'lane_load_x8',
    accs: A,
    flops: A * 8,
    body:
      accLines((i) => `    let v${i} = src[((k & 63u) * ${WG * A}u + ${i * WG}u + lid + base) & 65535u];`) +
      '\n' +
      accLines((i) => `    acc${i} = fma(acc${i}, vec4<f32>(v${i}), vec4<f32>(1e-3));`),
  },
];

const dev = await initDevice();
const src = empty([65536]);
const src4 = empty([65536]);
const out = empty([WG * GROUPS]);
const rows: (string | number)[][] = [];
for (const pr of probes) {
  const k = probeKernel(pr);
  const params = new Uint32Array([ITERS, 0, 0, 0]);
  const t = await timeDispatches([{ kernel: k, buffers: [{ buffer: src.buf }, { buffer: src4.buf }, { buffer: out.buf }], params, grid: [GROUPS, 1, 1] }], { minSeconds });
  const flops = pr.flops * ITERS * WG * GROUPS;
  rows.push([pr.name, (t.seconds * 1e3).toFixed(3), (flops / t.seconds / 1e9).toFixed(1), (flops / t.cpuSeconds / 1e9).toFixed(1)]);
}
console.log(`${dev.info.device || dev.info.description}${dev.info.isSoftware ? ' (software)' : ''}: ${WG}-thread workgroups x ${GROUPS}, ${ITERS} iterations`);
console.log(table(['probe', 'ms', 'GFLOP/s', 'GFLOP/cpu-s'], rows));
closeDevice();

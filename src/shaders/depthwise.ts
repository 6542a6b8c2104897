// Grouped convolution family (depthwise is groups = Cin): forward only, with an optional fused epilogue
// y = clamp(conv + bias, lo, hi), which covers inference batch norm folded into the weights and bias
// plus ReLU6 (MobileNet's depthwise blocks) in one pass. NCHW float32; weight [Cout, Cin/G, KH, KW];
// output channel co reads input channels [g * Cin/G, (g + 1) * Cin/G) with g = co / (Cout/G).
//
// Tiling: one thread per output element, outputs in NCHW order (ow fastest), walked grid-stride so a
// software adapter runs few workgroups (each costs lavapipe a scheduling round trip). Neighbouring
// threads share (n, co) and differ in ow: their input loads are neighbours and their weight loads are
// the same address (uniform across most of a workgroup). No workgroup memory and no barriers. Fast for
// depthwise and small groups (Cin/G * KH * KW taps of work per output, e.g. 9 for a 3x3 depthwise); a
// convolution with many channels per group belongs in the GEMM kernels of conv.ts.
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const GROUPED_WG = 64;

/** The grouped conv's uniforms (total = outputs, threads = launched; lo/hi: the fused clamp). */
export const GROUPED_UNIFORM = uniformStruct([
  ['total', 'u32'], ['cin', 'u32'], ['h', 'u32'], ['w', 'u32'],
  ['cout', 'u32'], ['oh', 'u32'], ['ow', 'u32'], ['sh', 'u32'],
  ['sw', 'u32'], ['dh', 'u32'], ['dw', 'u32'], ['pt', 'i32'],
  ['pl', 'i32'], ['kh', 'u32'], ['kw', 'u32'], ['cpg', 'u32'],
  ['opg', 'u32'], ['threads', 'u32'], ['lo', 'f32'], ['hi', 'f32'],
] as const);
const STRUCT = GROUPED_UNIFORM.wgsl;

/** Grouped conv2d forward. Bindings: x, w, [bias], y, params (total = outputs, threads = launched). */
export function groupedConvForwardKernel(bias: boolean): Kernel {
  const name = `grouped_conv2d_fwd${bias ? '_bias' : ''}`;
  const code = `// ${name}
${STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
${bias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 3 : 2}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${bias ? 4 : 3}) var<uniform> p: P;

@compute @workgroup_size(${GROUPED_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let plane = p.oh * p.ow;
  let khw = p.kh * p.kw;
  for (var i = ${linearIndexWgsl(GROUPED_WG)}; i < p.total; i += p.threads) {
    let nc = i / plane;
    let q = i - nc * plane;
    let n = nc / p.cout;
    let co = nc - n * p.cout;
    let oy = q / p.ow;
    let ox = q - oy * p.ow;
    let y0 = i32(oy * p.sh) - p.pt;
    let x0 = i32(ox * p.sw) - p.pl;
    let ci0 = (co / p.opg) * p.cpg;
    var acc = 0.0;
    for (var c = 0u; c < p.cpg; c++) {
      let xb = (n * p.cin + ci0 + c) * p.h * p.w;
      let wb = (co * p.cpg + c) * khw;
      for (var ky = 0u; ky < p.kh; ky++) {
        let iy = y0 + i32(ky * p.dh);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
          let ix = x0 + i32(kx * p.dw);
          if (ix < 0 || ix >= i32(p.w)) { continue; }
          acc = fma(x[xb + u32(iy) * p.w + u32(ix)], wt[wb + ky * p.kw + kx], acc);
        }
      }
    }
    ${bias ? 'acc += bias[co];' : ''}
    y[i] = clamp(acc, p.lo, p.hi);
  }
}
`;
  return { name, code, bindings: bias ? ['read', 'read', 'read', 'write', 'uniform'] : ['read', 'read', 'write', 'uniform'] };
}

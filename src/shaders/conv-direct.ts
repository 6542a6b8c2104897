// Direct (register-blocked) conv kernels, for software adapters: forward, input-gradient and weight-
// gradient passes of the convolution family (shaders/conv.ts holds the tiled GPU kernels, the shared
// uniform struct and the split-K sum).
//
// Lavapipe runs 8 invocations as the lanes of one AVX2 register. A load whose address differs per lane
// becomes 8 scalar loads with bounds checks, while a load whose address is the same for the whole
// workgroup (derived from uniforms, workgroup ids and loop counters only) is one scalar load and a
// broadcast. The tiled kernels (shaders/conv.ts) pay per-lane loads for both GEMM operands (global gathers, then
// workgroup-memory reads) plus barrier switches; these kernels instead give each workgroup one block of
// bn channels and make every weight (or dy) read uniform: per tap a thread does tm
// per-lane loads, bn uniform loads and tm*bn FMAs. No workgroup memory, no
// barriers. Rows owned by a thread are strided by the workgroup size, so neighbouring threads touch
// neighbouring addresses. Measured on a 2-core lavapipe (Meso-4 conv layers, batch 2, fwd+bwd): tiled
// 0.2 GFLOP/s, direct 4x8 4 GFLOP/s, 8x8 5 GFLOP/s, 16x8 5.3 GFLOP/s; 16 channels per block spill
// registers (1.9 GFLOP/s at 8x16).
import { type Kernel, GRID_BUILTINS_WGSL } from './kernel.js';
import { CONV_STRUCT } from './conv.js';
import {
  denseTapWgsl,
  FAR,
  epilogueSuffix,
  forwardStoreWgsl,
  forwardTapWgsl,
  indentWgsl,
  INPUT_GRAD_STORE_WGSL,
  inputGradTapWgsl,
  laneConstsWgsl,
  outputRowsWgsl,
  PHASE_PROLOGUE_WGSL,
  phaseRowsWgsl,
  rowWalkWgsl,
  tapShiftWgsl,
  tapTableWgsl,
} from './conv-fragments.js';

/**
 * A direct kernel's register block: `wg` threads per workgroup, `tm` rows (pixels, or taps for the
 * weight gradient) per thread strided by wg, `bn` channels per workgroup. A workgroup covers wg*tm
 * rows, so layers with few rows (ResNet's 4x4 and 2x2 stages: 32-128 rows at batch 8) want a small
 * wg: with 64 x 8 they would compute 512 rows and keep 32.
 */
export interface DirectTile {
  wg: number;
  tm: number;
  bn: number;
}

/** Forward / input-gradient default: 64 threads x 8 rows x 8 channels. */
export const DIRECT_TILE: DirectTile = { wg: 64, tm: 8, bn: 8 };
/**
 * The weight gradient's rows are taps (Cin*KH*KW, as few as 27): a workgroup of one SIMD register
 * (8 lanes x tm taps) keeps lanes busy on small kernels.
 */
export const DIRECT_WGRAD_TILE: DirectTile = { wg: 8, tm: 8, bn: 8 };

export function directKey(t: DirectTile): string {
  return `${t.wg}x${t.tm}x${t.bn}`;
}

/** Direct conv2d forward. Bindings as conv2dForwardKernel. Grid: (rows / (WG*TM) over x/y, Cout / BN on z). */
export function conv2dDirectForwardKernel(bias: boolean, t: DirectTile = DIRECT_TILE, relu = false): Kernel {
  const name = `conv2d_direct_fwd${epilogueSuffix(bias, relu)}_${directKey(t)}`;
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
${bias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${bias ? 3 : 2}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${bias ? 4 : 3}) var<uniform> p: P;
${laneConstsWgsl(t)}

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
${outputRowsWgsl(t.tm)}
  let c0 = wid.z * BN;
  let clast = p.cout - 1u;
  var acc: array<f32, ${t.tm * t.bn}>;
  var k = 0u;
  for (var ci = 0u; ci < p.cin; ci++) {
    for (var ky = 0u; ky < p.kh; ky++) {
      let dy = i32(ky * p.dh);
      for (var kx = 0u; kx < p.kw; kx++) {
        let dx = i32(kx * p.dw);
        var wv: array<f32, ${t.bn}>;
        for (var j = 0u; j < BN; j++) { wv[j] = wt[min(c0 + j, clast) * p.red + k]; }
${indentWgsl(forwardTapWgsl('ci * HW'), 8)}
        k++;
      }
    }
  }
${forwardStoreWgsl(bias, relu)}
}
`;
  return { name, code, bindings: bias ? ['read', 'read', 'read', 'write', 'uniform'] : ['read', 'read', 'write', 'uniform'] };
}


/**
 * Direct conv2d backward-input, by stride phase (see PHASE_WGSL). Bindings as
 * conv2dBackwardInputKernel. Grid: (N*ceil(H/sh)*ceil(W/sw) / (WG*TM) over x/y,
 * ceil(Cin / BN) * sh * sw on z).
 */
export function conv2dDirectBackwardInputKernel(t: DirectTile = DIRECT_TILE): Kernel {
  const name = `conv2d_direct_bwd_input_${directKey(t)}`;
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${laneConstsWgsl(t)}

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
${PHASE_PROLOGUE_WGSL}
  let khw = p.kh * p.kw;
  let c0 = cb * BN;
  let clast = p.cin - 1u;
  let sh = i32(p.sh);
  let sw = i32(p.sw);
${phaseRowsWgsl(t.tm)}
  var acc: array<f32, ${t.tm * t.bn}>;
  for (var co = 0u; co < p.cout; co++) {
    for (var ky = 0u; ky < p.kh; ky++) {
      let ty = i32(ry) + p.pt - i32(ky * p.dh);
      if (ty % sh != 0) { continue; }
      let cy = ty / sh;
      for (var kx = 0u; kx < p.kw; kx++) {
        let tx = i32(rx) + p.pl - i32(kx * p.dw);
        if (tx % sw != 0) { continue; }
        let cx = tx / sw;
        var wv: array<f32, ${t.bn}>;
        let wo = co * p.cin * khw + ky * p.kw + kx;
        for (var j = 0u; j < BN; j++) { wv[j] = wt[wo + min(c0 + j, clast) * khw]; }
${indentWgsl(inputGradTapWgsl('co * P_'), 8)}
      }
    }
  }
${INPUT_GRAD_STORE_WGSL}
}
`;
  return { name, code, bindings: ['read', 'read', 'write', 'uniform'] };
}

/**
 * Direct conv2d backward-weight, one split of the batch reduction per z index. Bindings as
 * conv2dBackwardWeightKernel; split s reduces rows l in [s * cps * la, min((s + 1) * cps * la, red))
 * (la = rows per chunk). Grid: (K / (WG*TM), Cout / BN, splits). The reduction walks (n, oh, ow)
 * with counters, so the dy reads are uniform and the loop has no division.
 */
export function conv2dDirectBackwardWeightKernel(t: DirectTile = DIRECT_WGRAD_TILE): Kernel {
  const name = `conv2d_direct_bwd_weight_${directKey(t)}`;
  const code = `// ${name}
${CONV_STRUCT}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${laneConstsWgsl(t)}

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
  let P_ = p.oh * p.ow;
  let HW = p.h * p.w;
  let khw = p.kh * p.kw;
  let kb = wid.x * WG * TM + lid;
  let c0 = wid.y * BN;
  let split = wid.z;
  let clast = p.cout - 1u;
${tapTableWgsl({ n: t.tm, count: 'TM', slot: 'k', at: 'kb + i * WG', limit: 'p.rows', decode: denseTapWgsl('k'), plane: 'ci' })}
  var acc: array<f32, ${t.tm * t.bn}>;
  let lBeg = min(split * p.cps * p.la, p.red);
  let lEnd = min(lBeg + p.cps * p.la, p.red);
${rowWalkWgsl('TM', t.bn)}
  let ob = split * p.cout * p.rows;
  for (var i = 0u; i < TM; i++) {
    let k = kb + i * WG;
    if (k >= p.rows) { continue; }
    for (var j = 0u; j < BN; j++) {
      let co = c0 + j;
      if (co < p.cout) { out[ob + co * p.rows + k] = acc[i * BN + j]; }
    }
  }
}
`;
  return { name, code, bindings: ['read', 'read', 'write', 'uniform'] };
}

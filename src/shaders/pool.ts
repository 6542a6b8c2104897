// Pooling family: max and average 2-D pooling (forward and backward) and global average pooling.
// NCHW float32; a "plane" is one (n, c) image of H x W.
//
// Forwards run one thread per output element over its window. Backwards write every input element
// exactly once, so they need no atomics and no zero-fill pass, and are deterministic:
// - overlapping windows (stride < kernel): a gather, one thread per input element summing, in fixed
//   (oh, ow) order, the outputs whose window covers it;
// - non-overlapping windows (stride >= kernel, the common case: Meso-4's pools): one thread per
//   stride cell (the sh x sw block of input starting where an output's window starts; the cells tile
//   the whole padded input), writing its block: dy (or dy / divisor) inside the window, 0 elsewhere.
//   This avoids the gather's per-element index divisions, which software adapters pay dearly.
//
// Padding (top, left, bottom, right) acts as -inf for max pooling and as zeros for average pooling,
// where the divisor counts the padding (PyTorch's count_include_pad=True) or only the real elements
// (count_include_pad=False, which is also TensorFlow/Keras 'same' average pooling).
import { uniformStruct } from './uniform.js';
import { type Kernel, linearIndexWgsl, GRID_BUILTINS_WGSL } from './kernel.js';

export const POOL_WG = 256;

/**
 * Thread i's plane pl_ and position (oy, ox) in a plane of `size` cells, `width` wide (q: the index in
 * the plane), and the top-left (y0, x0) of the window at that output position, in input coordinates.
 */
function windowOf(size: string, width: string): string {
  return `  let pl_ = i / ${size};
  let q = i - pl_ * ${size};
  let oy = q / ${width};
  let ox = q - oy * ${width};
  let y0 = i32(oy * p.sh) - p.pt;
  let x0 = i32(ox * p.sw) - p.pl;`;
}

/** A thread per output: its plane, (oy, ox), window corner (y0, x0); P_ = OH*OW. */
const OUTPUT_WINDOW = `  let P_ = p.oh * p.ow;
${windowOf('P_', 'p.ow')}`;

/**
 * A thread per input element: its plane pl_, (iy, ix), and the ranges ry, rx of outputs whose windows
 * cover it (RANGE_FN's outRange); HW = H*W.
 */
const INPUT_WINDOWS = `  let HW = p.h * p.w;
  let pl_ = i / HW;
  let q = i - pl_ * HW;
  let iy = q / p.w;
  let ix = q - iy * p.w;
  let ry = outRange(i32(iy) + p.pt, p.kh, p.sh, p.oh);
  let rx = outRange(i32(ix) + p.pl, p.kw, p.sw, p.ow);`;

/** The pooling kernels' uniforms (cy, cx: stride cells tiling the padded input). */
export const POOL_UNIFORM = uniformStruct([
  ['total', 'u32'], ['planes', 'u32'], ['h', 'u32'], ['w', 'u32'],
  ['oh', 'u32'], ['ow', 'u32'], ['kh', 'u32'], ['kw', 'u32'],
  ['sh', 'u32'], ['sw', 'u32'], ['pt', 'i32'], ['pl', 'i32'],
  ['pb', 'i32'], ['pr', 'i32'], ['cy', 'u32'], ['cx', 'u32'],
] as const);
const POOL_STRUCT = POOL_UNIFORM.wgsl;

const HEAD = (name: string, decl: string) => `// ${name}
${POOL_STRUCT}
${decl}

@compute @workgroup_size(${POOL_WG})
fn main(${GRID_BUILTINS_WGSL}) {
  let i = ${linearIndexWgsl(POOL_WG)};
  if (i >= p.total) { return; }`;

/**
 * Max pool forward: y = window max (first maximum in row-major window order on ties), idx = its
 * position ih * W + iw within the input plane (-1 if the window holds only padding). Bindings: x, y,
 * idx (i32), params (total = outputs).
 */
export function maxPoolForwardKernel(): Kernel {
  const code = `${HEAD(
    'max_pool2d_fwd',
    `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<i32>;
@group(0) @binding(3) var<uniform> p: P;`,
  )}
${OUTPUT_WINDOW}
  let base = pl_ * p.h * p.w;
  var best = -3.4028234663852886e38; // -FLT_MAX: a -inf literal is not a valid WGSL constant
  var bi = -1i;
  for (var ky = 0u; ky < p.kh; ky++) {
    let iy = y0 + i32(ky);
    if (iy < 0 || iy >= i32(p.h)) { continue; }
    for (var kx = 0u; kx < p.kw; kx++) {
      let ix = x0 + i32(kx);
      if (ix < 0 || ix >= i32(p.w)) { continue; }
      let at = iy * i32(p.w) + ix;
      let v = x[base + u32(at)];
      if (bi < 0 || v > best) {
        best = v;
        bi = at;
      }
    }
  }
  y[i] = best;
  idx[i] = bi;
}
`;
  return { name: 'max_pool2d_fwd', code, bindings: ['read', 'write', 'write', 'uniform'] };
}

/** Window range [lo, hi] of outputs along one axis whose window covers input t (padded coordinate). */
const RANGE_FN = `fn outRange(t: i32, k: u32, s: u32, n: u32) -> vec2<i32> {
  let a = t - i32(k) + 1;
  var lo = 0i;
  if (a > 0) { lo = (a + i32(s) - 1) / i32(s); }
  let hi = min(t / i32(s), i32(n) - 1);
  return vec2<i32>(lo, hi);
}`;

/**
 * Max pool backward (gather): dx[i] = sum of dy[o] over the outputs o whose window covers i and
 * whose idx[o] is i's position. Bindings: dy, idx, dx, params (total = inputs).
 */
export function maxPoolBackwardKernel(): Kernel {
  const code = `${RANGE_FN}
${HEAD(
    'max_pool2d_bwd',
    `@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> p: P;`,
  )}
${INPUT_WINDOWS}
  let ob = pl_ * p.oh * p.ow;
  let me = i32(q);
  var s = 0.0;
  for (var oy = ry.x; oy <= ry.y; oy++) {
    for (var ox = rx.x; ox <= rx.y; ox++) {
      let o = ob + u32(oy) * p.ow + u32(ox);
      if (idx[o] == me) { s += dy[o]; }
    }
  }
  dx[i] = s;
}
`;
  return { name: 'max_pool2d_bwd', code, bindings: ['read', 'read', 'write', 'uniform'] };
}

/** The divisor of output (oy, ox) as WGSL; y0/x0 are the window's top-left in input coordinates. */
function divisor(includePad: boolean): string {
  return includePad
    ? `f32((min(y0 + i32(p.kh), i32(p.h) + p.pb) - y0) * (min(x0 + i32(p.kw), i32(p.w) + p.pr) - x0))`
    : `f32((min(y0 + i32(p.kh), i32(p.h)) - max(y0, 0)) * (min(x0 + i32(p.kw), i32(p.w)) - max(x0, 0)))`;
}

/** Average pool forward. Bindings: x, y, params (total = outputs). */
export function avgPoolForwardKernel(includePad: boolean): Kernel {
  const name = `avg_pool2d_fwd${includePad ? '' : '_nopad'}`;
  const code = `${HEAD(
    name,
    `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: P;`,
  )}
${OUTPUT_WINDOW}
  let base = pl_ * p.h * p.w;
  let ys = max(y0, 0);
  let ye = min(y0 + i32(p.kh), i32(p.h));
  let xs = max(x0, 0);
  let xe = min(x0 + i32(p.kw), i32(p.w));
  var s = 0.0;
  for (var iy = ys; iy < ye; iy++) {
    for (var ix = xs; ix < xe; ix++) {
      s += x[base + u32(iy) * p.w + u32(ix)];
    }
  }
  y[i] = s / ${divisor(includePad)};
}
`;
  return { name, code, bindings: ['read', 'write', 'uniform'] };
}

/** Average pool backward (gather). Bindings: dy, dx, params (total = inputs). */
export function avgPoolBackwardKernel(includePad: boolean): Kernel {
  const name = `avg_pool2d_bwd${includePad ? '' : '_nopad'}`;
  const code = `${RANGE_FN}
${HEAD(
    name,
    `@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<uniform> p: P;`,
  )}
${INPUT_WINDOWS}
  let ob = pl_ * p.oh * p.ow;
  var s = 0.0;
  for (var oy = ry.x; oy <= ry.y; oy++) {
    let y0 = oy * i32(p.sh) - p.pt;
    for (var ox = rx.x; ox <= rx.y; ox++) {
      let x0 = ox * i32(p.sw) - p.pl;
      s += dy[ob + u32(oy) * p.ow + u32(ox)] / ${divisor(includePad)};
    }
  }
  dx[i] = s;
}
`;
  return { name, code, bindings: ['read', 'write', 'uniform'] };
}

/** Global average pool forward: y[plane] = mean of the plane, summed in index order. Bindings: x, y, params (total = planes, h*w in h). */
export function globalAvgPoolKernel(): Kernel {
  const code = `${HEAD(
    'global_avg_pool',
    `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: P;`,
  )}
  let HW = p.h * p.w;
  let base = i * HW;
  var s = 0.0;
  for (var k = 0u; k < HW; k++) { s += x[base + k]; }
  y[i] = s / f32(HW);
}
`;
  return { name: 'global_avg_pool', code, bindings: ['read', 'write', 'uniform'] };
}

/**
 * Backward for non-overlapping windows (stride >= kernel), one thread per stride cell; see the header.
 * 'max' bindings: dy, idx, dx, params; 'avg': dy, dx, params. params.total = planes * cy * cx cells,
 * cy = ceil((H + pt) / sh), cx = ceil((W + pl) / sw).
 */
export function poolBackwardCellsKernel(kind: 'max' | 'avg', includePad = true): Kernel {
  const name = `${kind}_pool2d_bwd_cells${kind === 'avg' && !includePad ? '_nopad' : ''}`;
  const decl =
    kind === 'max'
      ? `@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> p: P;`
      : `@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<uniform> p: P;`;
  const value =
    kind === 'max'
      ? `select(0.0, g, idx[o] == at)`
      : 'g';
  const code = `${HEAD(name, decl)}
  let cells = p.cy * p.cx;
${windowOf('cells', 'p.cx')}
  let real = oy < p.oh && ox < p.ow;
  let o = pl_ * p.oh * p.ow + min(oy, p.oh - 1u) * p.ow + min(ox, p.ow - 1u);
  var g = 0.0;
  if (real) { g = dy[o]${kind === 'avg' ? ` / ${divisor(includePad)}` : ''}; }
  let base = pl_ * p.h * p.w;
  for (var ry = 0u; ry < p.sh; ry++) {
    let iy = y0 + i32(ry);
    if (iy < 0 || iy >= i32(p.h)) { continue; }
    for (var rx = 0u; rx < p.sw; rx++) {
      let ix = x0 + i32(rx);
      if (ix < 0 || ix >= i32(p.w)) { continue; }
      let at = iy * i32(p.w) + ix;
      var v = 0.0;
      if (real && ry < p.kh && rx < p.kw) { v = ${value}; }
      dx[base + u32(at)] = v;
    }
  }
}
`;
  const bindings: Kernel['bindings'] = kind === 'max' ? ['read', 'read', 'write', 'uniform'] : ['read', 'write', 'uniform'];
  return { name, code, bindings };
}

/**
 * Max pool by row quads, for software adapters: windows kw = sw in {2, 4}, kh = sh, no padding, rows
 * of whole vec4s (W % 4 == 0) and H % sh == 0, so the windows tile the input and a 4-column quad holds
 * 4 / kw whole windows. One thread per (plane, output row, quad): forward loads kh vec4s (one per
 * window row) for 4 / kw outputs, where the window kernel pays kh * kw scalar loads and an index
 * division per output; backward loads the quad's 4 / kw (dy, idx) pairs and writes kh vec4s of dx.
 * Same comparisons in the same (row-major window) order as maxPoolForwardKernel, so the same bits and
 * the same first-maximum argmax. params.total = planes * oh * (W / 4).
 */
export function maxPoolQuadKernel(dir: 'fwd' | 'bwd', kw: 2 | 4): Kernel {
  const per = 4 / kw;
  const js = Array.from({ length: per }, (_, j) => j);
  const name = `max_pool2d_${dir}_quad${kw}`;
  const comps = ['x', 'y', 'z', 'w'];
  const index = `  let QW = p.w / 4u;
  let rows = p.oh * QW;
  let pl_ = i / rows;
  let r = i - pl_ * rows;
  let oy = r / QW;
  let qx = r - oy * QW;
  let y0 = oy * p.sh;
  let base4 = pl_ * p.h * QW + qx;
  let o = pl_ * p.oh * p.ow + oy * p.ow + qx * ${per}u;`;
  if (dir === 'fwd') {
    // Window j of the quad covers components j * kw .. j * kw + kw - 1.
    const first = js
      .map((j) => {
        const c0 = j * kw;
        const rest = Array.from({ length: kw - 1 }, (_, k) => c0 + k + 1)
          .map((c) => `  if (v0.${comps[c]} > b${j}) { b${j} = v0.${comps[c]}; i${j} = at0 + ${c}; }`)
          .join('\n');
        return `  var b${j} = v0.${comps[c0]};\n  var i${j} = at0 + ${c0};\n${rest}`;
      })
      .join('\n');
    const more = js
      .flatMap((j) => Array.from({ length: kw }, (_, k) => j * kw + k).map((c) => `    if (v.${comps[c]} > b${j}) { b${j} = v.${comps[c]}; i${j} = at + ${c}; }`))
      .join('\n');
    const code = `${HEAD(
      name,
      `@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<i32>;
@group(0) @binding(3) var<uniform> p: P;`,
    )}
${index}
  let v0 = x[base4 + y0 * QW];
  let at0 = i32(y0 * p.w + qx * 4u);
${first}
  for (var ky = 1u; ky < p.kh; ky++) {
    let iy = y0 + ky;
    let v = x[base4 + iy * QW];
    let at = i32(iy * p.w + qx * 4u);
${more}
  }
${js.map((j) => `  y[o + ${j}u] = b${j};\n  idx[o + ${j}u] = i${j};`).join('\n')}
}
`;
    return { name, code, bindings: ['read', 'write', 'write', 'uniform'] };
  }
  const lanes = [0, 1, 2, 3].map((c) => {
    const j = Math.floor(c / kw);
    return `select(0.0, g${j}, i${j} == at + ${c})`;
  });
  const code = `${HEAD(
    name,
    `@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: P;`,
  )}
${index}
${js.map((j) => `  let g${j} = dy[o + ${j}u];\n  let i${j} = idx[o + ${j}u];`).join('\n')}
  for (var ky = 0u; ky < p.sh; ky++) {
    let iy = y0 + ky;
    let at = i32(iy * p.w + qx * 4u);
    dx[base4 + iy * QW] = vec4<f32>(${lanes.join(', ')});
  }
}
`;
  return { name, code, bindings: ['read', 'read', 'write', 'uniform'] };
}

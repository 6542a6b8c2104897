// Blocked sparse convolution by row strips (software adapters): the blocked layout of sparse-conv.ts
// (blocks of 8 channels, each listing the (c, ky, kx) taps kept by any of its channels, 8 values per
// tap) walked with the row-strip register blocking of conv-strip.ts. Serves the forward and, on the
// layout by input-channel block with the taps flipped, the input gradient of a stride-1 conv; the
// weight gradient by 4-pixel quads; and the input gradient over the co-tile layout (kept blocks by
// output block, per tile of 8 input channels: sparseStripCoTileKernel), which block:8 masks favour.
//
// Why: on lavapipe a storage load costs 10-30 FMAs (docs/lavapipe-speed.md). The direct sparse kernel
// pays, per kept tap, one per-lane scalar load per pixel and 8 uniform scalar loads of values: the
// loads-per-FMA of the dense direct kernel, which the dense row-strip kernels beat 2x; so skipping 80%
// of the taps bought about 1.2-1.8x. Here a thread owns PX consecutive output pixels of one row and the
// block's 8 channels (2*PX vec4 accumulators). The taps of a block come sorted by (c, ky, kx), so the
// input row segment for (c, ky) is loaded once, as aligned vec4s, and serves every kept kx of that row
// (the branch on "new row" is uniform: every lane walks the same list); each kept tap then costs 2
// uniform vec4 loads (its 8 values) and 2*PX vec4 FMAs. Under block masks (whole 8-channel blocks at a
// tap) the forward's list holds exactly the kept taps, so loads and FMAs both fall with density.
//
// KW and the left padding PL are compile-time (the component picks depend on the tap's kx, dispatched
// by a uniform switch); kernel height, top padding and sizes are uniforms. FLIP (input gradient): the
// tap (ky, kx) is read as (KH-1-ky, KW-1-kx) of a correlation over dy with padding KH-1-pt, KW-1-pl.
import { uniformStruct } from './uniform.js';
import { FAR } from './conv-fragments.js';
import { GRID_BUILTINS_WGSL, type Kernel } from './kernel.js';
import { stripPieceWgsl, stripQuads } from './conv-strip.js';

/** Threads per workgroup and output pixels per thread along a row (4, 8 or 16); 8 channels per block. */
export interface SparseStripTile {
  wg: number;
  px: number;
}

/** Channels per block of the strip kernels (the blocked layout's BN). */
export const SPARSE_STRIP_BN = 8;

/**
 * The strip kernels' uniforms. The "input" is the tensor the taps read (x, or dy when flipped) with
 * `cx` channels on an h x w plane; the output has `cy` channels on an oh x ow plane. qpr: PX-pixel
 * pieces per output row; rows: N * OH * qpr; cps: blocks walked per workgroup; nblocks: blocks.
 */
export const SPARSE_STRIP_UNIFORM = uniformStruct([
  ['n', 'u32'], ['cx', 'u32'], ['h', 'u32'], ['w', 'u32'],
  ['cy', 'u32'], ['oh', 'u32'], ['ow', 'u32'], ['kh', 'u32'],
  ['pt', 'i32'], ['qpr', 'u32'], ['rows', 'u32'], ['cps', 'u32'],
  ['nblocks', 'u32'],
] as const);


/**
 * out[n, blk*8 + j, oh, ow] = sum over the block's taps (c, ky, kx) of vals[tap, j] *
 * in[n, c, oh + ky' - pt, ow + kx' - PL] (+ bias), with (ky', kx') = (ky, kx), or (KH-1-ky, KW-1-kx)
 * when flipped; zero outside the input. A workgroup = wg threads x PX pixels each, over rows of
 * N*OH*ceil(OW/PX), and a run of `cps` blocks (z). Per (c, ky) row of a block: ceil((PX+KW-1)/4)
 * per-lane vec4 loads; per kept tap: 2 uniform vec4 loads, 2*PX vec4 FMAs.
 * Bindings: in (vec4s), ptr, taps, vals (vec4s), [bias], out (vec4s), params.
 * Fast for: stride-1 convs with input and output rows of whole vec4s (W, OW % 4 == 0) whose blocks keep few taps (block
 * masks at low density); at full density it does the dense strip kernel's work with 8 channels.
 */
export function sparseStripKernel(t: SparseStripTile, kw: number, pl: number, flip: boolean, bias: boolean): Kernel {
  if (![4, 8, 16].includes(t.px) || t.wg < 1) throw new Error(`sparse strip: bad tile ${JSON.stringify(t)}`);
  if (flip && bias) throw new Error('sparse strip: the input gradient has no bias');
  const name = `sparse_strip_k${kw}p${pl}${flip ? '_flip' : ''}${bias ? '_bias' : ''}_${t.wg}x${t.px}`;
  const G = t.px / 4;
  const BN = SPARSE_STRIP_BN;
  const { q0, nq, lines: L } = stripQuads(t.px, kw, pl);
  const v = (i: number) => `q${Math.floor(i / 4)}[${i % 4}]`;
  const load: string[] = [];
  for (let i = 0; i < nq; i++) {
    load.push(`        q${i} = select(Z4, src[select(0u, rb + u32(i32(ow0 >> 2u) + ${q0 + i}), ok && cok${i})], ok && cok${i});`);
  }
  // One switch case per raw kx of the layout; the component picks are those of the tap it stands for.
  const cases: string[] = [];
  for (let raw = 0; raw < kw; raw++) {
    const kx = flip ? kw - 1 - raw : raw;
    const body: string[] = [];
    for (let g = 0; g < G; g++) {
      const idx = [0, 1, 2, 3].map((j) => g * 4 + j + kx - pl - 4 * q0);
      body.push(`          let s${g} = vec4<f32>(${idx.map(v).join(', ')});`);
      for (let c = 0; c < BN; c++) body.push(`          a${g}_${c} = fma(s${g}, vec4<f32>(w${c >> 2}[${c & 3}]), a${g}_${c});`);
    }
    cases.push(`        ${raw === kw - 1 ? 'default' : `case ${raw}u`}: {\n${body.join('\n')}\n        }`);
  }
  const zero: string[] = [];
  for (let g = 0; g < G; g++) for (let c = 0; c < BN; c++) zero.push(`    var a${g}_${c} = vec4<f32>(0.0);`);
  // OW is a multiple of 4 (the launcher's condition), so each accumulator is one aligned vec4 store:
  // per thread 8*PX/4 stores, which at low density cost more than the kept taps' loads as scalars.
  const store: string[] = [];
  for (let c = 0; c < BN; c++) {
    store.push(`    if (c0 + ${c}u < p.cy) {`);
    store.push(`      let yb = (((nb * p.cy + c0 + ${c}u) * p.oh + oh) * p.ow + ow0) >> 2u;`);
    for (let g = 0; g < G; g++) {
      store.push(`      if (ow0 + ${g * 4}u < p.ow) { out[yb + ${g}u] = a${g}_${c}${bias ? ` + vec4<f32>(bias[c0 + ${c}u])` : ''}; }`);
    }
    store.push('    }');
  }
  const bind = (i: number) => `@group(0) @binding(${i})`;
  const code = `// ${name}: ${t.wg} threads, ${t.px} pixels x ${BN} channels per thread, ${nq} vec4 loads per (c, ky) row
${SPARSE_STRIP_UNIFORM.wgsl}
${bind(0)} var<storage, read> src: array<vec4<f32>>;
${bind(1)} var<storage, read> ptr: array<u32>;
${bind(2)} var<storage, read> taps: array<u32>;
${bind(3)} var<storage, read> vals: array<vec4<f32>>;
${bias ? `${bind(4)} var<storage, read> bias: array<f32>;` : ''}
${bind(bias ? 5 : 4)} var<storage, read_write> out: array<vec4<f32>>;
${bind(bias ? 6 : 5)} var<uniform> p: P;
const Z4 = vec4<f32>(0.0);

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
${stripPieceWgsl(t.wg, t.px)}
  let w4 = p.w >> 2u;
${L.join('\n')}
  let bEnd = min(wid.z * p.cps + p.cps, p.nblocks);
  for (var blk = wid.z * p.cps; blk < bEnd; blk++) {
    let c0 = blk * ${BN}u;
${zero.join('\n')}
${Array.from({ length: nq }, (_, i) => `    var q${i} = Z4;`).join('\n')}
    var last = 0xffffffffu;
    let eEnd = ptr[blk + 1u];
    for (var e = ptr[blk]; e < eEnd; e++) {
      let tp = taps[e];
      // Taps are sorted by (c, ky, kx): a new (c, ky) means a new input row segment.
      if ((tp >> 8u) != last) {
        last = tp >> 8u;
        let ky = (tp >> 8u) & 255u;
        let ih = i32(oh + ${flip ? 'p.kh - 1u - ky' : 'ky'}) - p.pt;
        let ok = u32(ih) < p.h;
        let rb = ((nb * p.cx + (tp >> 16u)) * p.h + u32(max(ih, 0))) * w4;
${load.join('\n')}
      }
      let w0 = vals[e * 2u];
      let w1 = vals[e * 2u + 1u];
      switch (tp & 255u) {
${cases.join('\n')}
      }
    }
    if (live) {
${store.join('\n')}
    }
  }
}
`;
  const binds: Kernel['bindings'] = bias ? ['read', 'read', 'read', 'read', 'read', 'write', 'uniform'] : ['read', 'read', 'read', 'read', 'write', 'uniform'];
  return { name, code, bindings: binds };
}

/**
 * Masked weight gradient of the blocked layout by 4-pixel quads (stride 1, no dilation, W and OW
 * multiples of 4): out[split, e*8 + j] = sum over the quads of split `split` of dy[n, c0+j, oh, ow..+4]
 * . x[n, c, oh + ky - pt, ow + kx - pl ..+4] for tap e = (c, ky, kx) of block c0/8. A workgroup = WG
 * lanes x TT kept taps each, of one block (lanes over taps: per-lane x loads), x one split of the
 * N*OH*OW/4 quads. Per quad: 8 uniform vec4 loads of dy, shared by every lane, and per tap 2 per-lane
 * aligned vec4 loads of x (the shifted quad straddles two; a per-lane select picks it) for 8 vec4 FMAs:
 * 4x the FMAs per load of the scalar tap-lane kernel, and work only on kept taps. Each accumulator's
 * 4 lanes are summed at the end. Results go to parts[split, entries * 8] as in
 * sparseConvBackwardWeightKernel (scatterSumKernel adds the splits).
 * Bindings: dy (vec4s), x (vec4s), ptr, taps, parts, params (CONV_STRUCT: rows = entries, red =
 * quads, cps = quads per split). Grid: (ceil(max block entries / (WG*TT)), blocks, splits).
 * Fast for: blocks with at least WG*TT kept taps (else lanes idle); any density.
 */
export function sparseStripWgradKernel(wg: number, tt: number, convStruct: string): Kernel {
  const name = `sparse_strip_wgrad_${wg}x${tt}`;
  const BN = SPARSE_STRIP_BN;
  const acc: string[] = [];
  for (let i = 0; i < tt; i++) for (let j = 0; j < BN; j++) acc.push(`  var a${i}_${j} = vec4<f32>(0.0);`);
  const table: string[] = [];
  for (let i = 0; i < tt; i++) {
    table.push(`  let e${i} = eBeg + lid + ${i * wg}u;`);
    table.push(`  let t${i} = taps[min(e${i}, eEnd - 1u)];`);
    // Rows off the image for slots past the list: never loaded, never stored.
    table.push(`  let dky${i} = select(${FAR}, i32((t${i} >> 8u) & 255u) - p.pt, e${i} < eEnd);`);
    table.push(`  let dkx${i} = i32(t${i} & 255u) - p.pl;`);
    table.push(`  let xo${i} = (t${i} >> 16u) * HW;`);
  }
  const body: string[] = [];
  for (let i = 0; i < tt; i++) {
    body.push(`      {
        let ih = i32(oh) + dky${i};
        if (u32(ih) < p.h) {
          let col = i32(ow0) + dkx${i};
          let qa = col >> 2u;
          let r = u32(col - (qa << 2u));
          let rb = (xn + xo${i} + u32(ih) * p.w) >> 2u;
          let oka = qa >= 0 && qa < w4;
          let okb = qa + 1 >= 0 && qa + 1 < w4;
          let A = select(Z4, x[select(0u, rb + u32(qa), oka)], oka);
          let B = select(Z4, x[select(0u, rb + u32(qa + 1), okb)], okb);
          var s = A;
          if (r == 1u) { s = vec4<f32>(A.y, A.z, A.w, B.x); }
          if (r == 2u) { s = vec4<f32>(A.z, A.w, B.x, B.y); }
          if (r == 3u) { s = vec4<f32>(A.w, B.x, B.y, B.z); }
${Array.from({ length: BN }, (_, j) => `          a${i}_${j} = fma(s, d${j}, a${i}_${j});`).join('\n')}
        }
      }`);
  }
  const store: string[] = [];
  for (let i = 0; i < tt; i++) {
    store.push(`  if (e${i} < eEnd) {`);
    for (let j = 0; j < BN; j++) store.push(`    parts[ob + e${i} * ${BN}u + ${j}u] = (a${i}_${j}.x + a${i}_${j}.y) + (a${i}_${j}.z + a${i}_${j}.w);`);
    store.push('  }');
  }
  const code = `// ${name}: ${wg} lanes x ${tt} kept taps x ${BN} channels, 4-pixel quads
${convStruct}
@group(0) @binding(0) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ptr: array<u32>;
@group(0) @binding(3) var<storage, read> taps: array<u32>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
const Z4 = vec4<f32>(0.0);

@compute @workgroup_size(${wg})
fn main(${GRID_BUILTINS_WGSL}) {
  let blk = wid.y;
  let eBeg = ptr[blk] + wid.x * ${wg * tt}u;
  let eEnd = ptr[blk + 1u];
  if (eBeg >= eEnd) { return; }
  let HW = p.h * p.w;
  let w4 = i32(p.w >> 2u);
  let qpr = p.ow >> 2u;
  let c0 = blk * ${BN}u;
  let clast = p.cout - 1u;
${table.join('\n')}
${acc.join('\n')}
  let lBeg = min(wid.z * p.cps, p.red);
  let lEnd = min(lBeg + p.cps, p.red);
  // Quad l = (n, oh, ow/4), walked with counters.
  var nb = lBeg / (p.oh * qpr);
  let rem = lBeg - nb * p.oh * qpr;
  var oh = rem / qpr;
  var qi = rem - oh * qpr;
  for (var l = lBeg; l < lEnd; l++) {
    let ow0 = qi * 4u;
    let xn = nb * p.cin * HW;
    let db = (nb * p.cout * p.oh + oh) * p.ow + ow0;
${Array.from({ length: BN }, (_, j) => `    let d${j} = dy[(db + min(c0 + ${j}u, clast) * p.oh * p.ow) >> 2u];`).join('\n')}
${body.join('\n')}
    qi++;
    if (qi == qpr) {
      qi = 0u;
      oh++;
      if (oh == p.oh) { oh = 0u; nb++; }
    }
  }
  let ob = wid.z * p.rows * ${BN}u;
${store.join('\n')}
}
`;
  return { name, code, bindings: ['read', 'read', 'read', 'read', 'write', 'uniform'] };
}

/**
 * Input gradient of the blocked layout by output-channel block, per tile of CT input channels (stride
 * 1, no dilation, dy and dx rows of whole vec4s): dx[n, ci, ih, iw] = sum over the kept blocks (g, ci,
 * ky, kx) of sum_j vals[e*8 + j] * dy[n, 8g + j, ih - ky + pt, iw - kx + pl].
 *
 * Why: the by-input-block layout (sparseStripKernel flipped) lists a (co, ky, kx) tap when ANY of 8
 * input channels keeps it; block:8 masks group output channels, the dimension this pass sums over, so
 * at 20% density that union keeps 1 - 0.8^8 = 83% of the taps and the kernel does 83% of dense work.
 * Here a thread owns PX pixels of a dx row and a tile of CT input channels (CT*PX/4 vec4 accumulators);
 * the tile's kept blocks are grouped by (g, ky), each group holding exactly its kept (ci, kx) pairs.
 * Per group and channel j of the block: one dy row segment (ceil((PX+KW-1)/4) per-lane vec4 loads,
 * the same loads per output as the dense strip kernel with 8 channels a thread), then per kept block
 * one uniform scalar value and PX/4 vec4 FMAs: the FMAs fall with density, the dy loads do not (each
 * row serves CT*KW candidate blocks, nearly always one of them kept).
 *
 * Layout (ops/sparse.ts buildCoTiles): tptr[tile] .. tptr[tile + 1] index `groups` (pairs: g << 8 |
 * ky, first entry; a sentinel pair closes the list), `ents` holds cl * KW + kx per kept block, `vals`
 * 8 values per entry (+0 for a channel past Cout or pruned alone). Uniforms: SPARSE_STRIP_UNIFORM with
 * the dy plane as input (cx = Cout, h x w = OH x OW), dx as output (cy = Cin, oh x ow = H x W), pt =
 * KH-1-pt, PL = KW-1-pl (compile time), cps tiles per workgroup, nblocks = tiles.
 * Bindings: dy (vec4s), tptr, groups, ents, vals, dx (vec4s), params. Grid as sparseStripKernel's.
 * Fast for: block-structured masks at low density on stride-1 layers of rows >= 8; at full density it
 * does the dense strip kernel's work plus a switch per block.
 */
export function sparseStripCoTileKernel(t: SparseStripTile, kw: number, pl: number, ct: number): Kernel {
  if (![4, 8, 16].includes(t.px) || t.wg < 1 || ![4, 8].includes(ct) || kw < 1) throw new Error(`sparse strip co-tile: bad tile ${JSON.stringify(t)} ct ${ct} kw ${kw}`);
  const name = `sparse_strip_cotile_k${kw}p${pl}_c${ct}_${t.wg}x${t.px}`;
  const G = t.px / 4;
  const { q0, nq, lines: L } = stripQuads(t.px, kw, pl);
  const v = (i: number) => `q${Math.floor(i / 4)}[${i % 4}]`;
  const load: string[] = [];
  for (let i = 0; i < nq; i++) {
    for (let j = 0; j < 8; j++) load.push(`      let r${j}_${i} = select(Z4, src[select(0u, rb${j} + u32(i32(ow0 >> 2u) + ${q0 + i}), ok && cok${i} && live${j})], ok && cok${i} && live${j});`);
  }
  // One case per (cl, raw kx); the picks are those of the flipped tap KW-1-kx, as sparseStripKernel's.
  const cases: string[] = [];
  for (let cl = 0; cl < ct; cl++) {
    for (let raw = 0; raw < kw; raw++) {
      const kx = kw - 1 - raw;
      const body: string[] = [];
      for (let g = 0; g < G; g++) {
        const idx = [0, 1, 2, 3].map((j) => g * 4 + j + kx - pl - 4 * q0);
        for (let j = 0; j < 8; j++) {
          const vj = (i: number) => `r${j}_${Math.floor(i / 4)}[${i % 4}]`;
          body.push(`            a${cl}_${g} = fma(vec4<f32>(${idx.map(vj).join(', ')}), vec4<f32>(w${j >> 2}[${j & 3}]), a${cl}_${g});`);
        }
      }
      const last = cl === ct - 1 && raw === kw - 1;
      cases.push(`          ${last ? 'default' : `case ${cl * kw + raw}u`}: {\n${body.join('\n')}\n          }`);
    }
  }
  const zero: string[] = [];
  for (let cl = 0; cl < ct; cl++) for (let g = 0; g < G; g++) zero.push(`    var a${cl}_${g} = Z4;`);
  const store: string[] = [];
  for (let cl = 0; cl < ct; cl++) {
    store.push(`      if (ci0 + ${cl}u < p.cy) {`);
    store.push(`        let yb = (((nb * p.cy + ci0 + ${cl}u) * p.oh + oh) * p.ow + ow0) >> 2u;`);
    for (let g = 0; g < G; g++) store.push(`        if (ow0 + ${g * 4}u < p.ow) { out[yb + ${g}u] = a${cl}_${g}; }`);
    store.push('      }');
  }
  const bind = (i: number) => `@group(0) @binding(${i})`;
  const code = `// ${name}: ${t.wg} threads, ${t.px} pixels x ${ct} input channels per thread, ${nq} vec4 loads per dy row
${SPARSE_STRIP_UNIFORM.wgsl}
${bind(0)} var<storage, read> src: array<vec4<f32>>;
${bind(1)} var<storage, read> tptr: array<u32>;
${bind(2)} var<storage, read> groups: array<u32>;
${bind(3)} var<storage, read> ents: array<u32>;
${bind(4)} var<storage, read> vals: array<vec4<f32>>;
${bind(5)} var<storage, read_write> out: array<vec4<f32>>;
${bind(6)} var<uniform> p: P;
const Z4 = vec4<f32>(0.0);

@compute @workgroup_size(${t.wg})
fn main(${GRID_BUILTINS_WGSL}) {
${stripPieceWgsl(t.wg, t.px)}
  let w4 = p.w >> 2u;
${L.join('\n')}
  let tEnd = min(wid.z * p.cps + p.cps, p.nblocks);
  for (var tile = wid.z * p.cps; tile < tEnd; tile++) {
    let ci0 = tile * ${ct}u;
${zero.join('\n')}
    let gEnd = tptr[tile + 1u];
    for (var gi = tptr[tile]; gi < gEnd; gi++) {
      let gk = groups[2u * gi];
      let eBeg = groups[2u * gi + 1u];
      let eEnd = groups[2u * gi + 3u];
      let ih = i32(oh + p.kh - 1u - (gk & 255u)) - p.pt;
      let ok = u32(ih) < p.h;
      let co0 = (gk >> 8u) * 8u;
${Array.from({ length: 8 }, (_, j) => `      let live${j} = co0 + ${j}u < p.cx;
      let rb${j} = ((nb * p.cx + min(co0 + ${j}u, p.cx - 1u)) * p.h + u32(max(ih, 0))) * w4;`).join('\n')}
${load.join('\n')}
      for (var e = eBeg; e < eEnd; e++) {
        let w0 = vals[2u * e];
        let w1 = vals[2u * e + 1u];
        switch (ents[e]) {
${cases.join('\n')}
        }
      }
    }
    if (live) {
${store.join('\n')}
    }
  }
}
`;
  return { name, code, bindings: ['read', 'read', 'read', 'read', 'read', 'write', 'uniform'] };
}

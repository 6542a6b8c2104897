// Float64 references for convolution, pooling and batch norm (plain loops, NCHW), their analytic
// backwards, and a finite-difference gradient helper. Geometry is passed explicitly (already
// resolved padding) so the references do not share code with the implementation under test.

export interface ConvRefGeom {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  /** top, left, bottom, right */
  pad: [number, number, number, number];
}

export function convOut(g: ConvRefGeom): [number, number] {
  const [pt, pl, pb, pr] = g.pad;
  return [
    Math.floor((g.h + pt + pb - g.dh * (g.kh - 1) - 1) / g.sh) + 1,
    Math.floor((g.w + pl + pr - g.dw * (g.kw - 1) - 1) / g.sw) + 1,
  ];
}

/** Visits every (output, input, weight) index triple that contributes to the convolution. */
function forEachTap(g: ConvRefGeom, f: (yi: number, xi: number, wi: number) => void): void {
  const [oh, ow] = convOut(g);
  const [pt, pl] = g.pad;
  for (let n = 0; n < g.n; n++)
    for (let co = 0; co < g.cout; co++)
      for (let y = 0; y < oh; y++)
        for (let x = 0; x < ow; x++) {
          const yi = ((n * g.cout + co) * oh + y) * ow + x;
          for (let ci = 0; ci < g.cin; ci++)
            for (let ky = 0; ky < g.kh; ky++) {
              const iy = y * g.sh - pt + ky * g.dh;
              if (iy < 0 || iy >= g.h) continue;
              for (let kx = 0; kx < g.kw; kx++) {
                const ix = x * g.sw - pl + kx * g.dw;
                if (ix < 0 || ix >= g.w) continue;
                f(yi, ((n * g.cin + ci) * g.h + iy) * g.w + ix, ((co * g.cin + ci) * g.kh + ky) * g.kw + kx);
              }
            }
        }
}

export function conv2dRef(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, g: ConvRefGeom): Float64Array {
  const [oh, ow] = convOut(g);
  const y = new Float64Array(g.n * g.cout * oh * ow);
  if (b) for (let i = 0; i < y.length; i++) y[i] = b[Math.floor(i / (oh * ow)) % g.cout];
  forEachTap(g, (yi, xi, wi) => (y[yi] += x[xi] * w[wi]));
  return y;
}

export function conv2dBackwardInputRef(dy: ArrayLike<number>, w: ArrayLike<number>, g: ConvRefGeom): Float64Array {
  const dx = new Float64Array(g.n * g.cin * g.h * g.w);
  forEachTap(g, (yi, xi, wi) => (dx[xi] += dy[yi] * w[wi]));
  return dx;
}

export function conv2dBackwardWeightRef(dy: ArrayLike<number>, x: ArrayLike<number>, g: ConvRefGeom): Float64Array {
  const dw = new Float64Array(g.cout * g.cin * g.kh * g.kw);
  forEachTap(g, (yi, xi, wi) => (dw[wi] += dy[yi] * x[xi]));
  return dw;
}

export function channelSumRef(dy: ArrayLike<number>, n: number, c: number, hw: number): Float64Array {
  const s = new Float64Array(c);
  for (let b = 0; b < n; b++) for (let ch = 0; ch < c; ch++) for (let q = 0; q < hw; q++) s[ch] += dy[(b * c + ch) * hw + q];
  return s;
}

// ---------------------------------------------------------------------------------------------
// Pooling

export interface PoolRefGeom {
  n: number;
  c: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  pad: [number, number, number, number];
}

export function poolOut(g: PoolRefGeom): [number, number] {
  const [pt, pl, pb, pr] = g.pad;
  return [Math.floor((g.h + pt + pb - g.kh) / g.sh) + 1, Math.floor((g.w + pl + pr - g.kw) / g.sw) + 1];
}

/** Visits each output with the in-plane positions of its window's real elements (row-major). */
function forEachWindow(g: PoolRefGeom, f: (plane: number, oi: number, taps: number[], y0: number, x0: number) => void): void {
  const [oh, ow] = poolOut(g);
  const [pt, pl] = g.pad;
  for (let pln = 0; pln < g.n * g.c; pln++)
    for (let y = 0; y < oh; y++)
      for (let x = 0; x < ow; x++) {
        const y0 = y * g.sh - pt;
        const x0 = x * g.sw - pl;
        const taps: number[] = [];
        for (let ky = 0; ky < g.kh; ky++)
          for (let kx = 0; kx < g.kw; kx++) {
            const iy = y0 + ky;
            const ix = x0 + kx;
            if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) taps.push(iy * g.w + ix);
          }
        f(pln, (pln * oh + y) * ow + x, taps, y0, x0);
      }
}

export function maxPoolRef(x: ArrayLike<number>, g: PoolRefGeom): { y: Float64Array; idx: Int32Array } {
  const [oh, ow] = poolOut(g);
  const y = new Float64Array(g.n * g.c * oh * ow);
  const idx = new Int32Array(y.length);
  forEachWindow(g, (pln, oi, taps) => {
    let best = -Infinity;
    let bi = -1;
    for (const t of taps) {
      const v = x[pln * g.h * g.w + t];
      if (bi < 0 || v > best) {
        best = v;
        bi = t;
      }
    }
    y[oi] = best;
    idx[oi] = bi;
  });
  return { y, idx };
}

export function maxPoolBackwardRef(dy: ArrayLike<number>, x: ArrayLike<number>, g: PoolRefGeom): Float64Array {
  const { idx } = maxPoolRef(x, g);
  const [oh, ow] = poolOut(g);
  const dx = new Float64Array(g.n * g.c * g.h * g.w);
  for (let i = 0; i < idx.length; i++) {
    const pln = Math.floor(i / (oh * ow));
    dx[pln * g.h * g.w + idx[i]] += dy[i];
  }
  return dx;
}

function avgDivisor(g: PoolRefGeom, taps: number[], y0: number, x0: number, includePad: boolean): number {
  if (!includePad) return taps.length;
  const [, , pb, pr] = g.pad;
  return (Math.min(y0 + g.kh, g.h + pb) - y0) * (Math.min(x0 + g.kw, g.w + pr) - x0);
}

export function avgPoolRef(x: ArrayLike<number>, g: PoolRefGeom, includePad: boolean): Float64Array {
  const [oh, ow] = poolOut(g);
  const y = new Float64Array(g.n * g.c * oh * ow);
  forEachWindow(g, (pln, oi, taps, y0, x0) => {
    let s = 0;
    for (const t of taps) s += x[pln * g.h * g.w + t];
    y[oi] = s / avgDivisor(g, taps, y0, x0, includePad);
  });
  return y;
}

export function avgPoolBackwardRef(dy: ArrayLike<number>, g: PoolRefGeom, includePad: boolean): Float64Array {
  const dx = new Float64Array(g.n * g.c * g.h * g.w);
  forEachWindow(g, (pln, oi, taps, y0, x0) => {
    const d = dy[oi] / avgDivisor(g, taps, y0, x0, includePad);
    for (const t of taps) dx[pln * g.h * g.w + t] += d;
  });
  return dx;
}

export function globalAvgPoolRef(x: ArrayLike<number>, planes: number, hw: number): Float64Array {
  const y = new Float64Array(planes);
  for (let p = 0; p < planes; p++) {
    let s = 0;
    for (let q = 0; q < hw; q++) s += x[p * hw + q];
    y[p] = s / hw;
  }
  return y;
}

// ---------------------------------------------------------------------------------------------
// Batch norm (per channel over N and HW)

export interface BnRefTrain {
  y: Float64Array;
  mean: Float64Array;
  /** Biased variance. */
  varB: Float64Array;
  invstd: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
}

export function bnTrainRef(
  x: ArrayLike<number>,
  n: number,
  c: number,
  hw: number,
  gamma: ArrayLike<number> | null,
  beta: ArrayLike<number> | null,
  rm: ArrayLike<number>,
  rv: ArrayLike<number>,
  momentum: number,
  eps: number,
): BnRefTrain {
  const cnt = n * hw;
  const mean = new Float64Array(c);
  const varB = new Float64Array(c);
  for (let b = 0; b < n; b++) for (let ch = 0; ch < c; ch++) for (let q = 0; q < hw; q++) mean[ch] += x[(b * c + ch) * hw + q];
  for (let ch = 0; ch < c; ch++) mean[ch] /= cnt;
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < c; ch++)
      for (let q = 0; q < hw; q++) {
        const d = x[(b * c + ch) * hw + q] - mean[ch];
        varB[ch] += d * d;
      }
  for (let ch = 0; ch < c; ch++) varB[ch] /= cnt;
  const invstd = varB.map((v) => 1 / Math.sqrt(v + eps));
  const y = bnApplyRef(x, n, c, hw, mean, invstd, gamma, beta);
  const runningMean = Float64Array.from(rm, (r, ch) => (1 - momentum) * r + momentum * mean[ch]);
  const runningVar = Float64Array.from(rv, (r, ch) => (1 - momentum) * r + momentum * varB[ch] * (cnt / (cnt - 1)));
  return { y, mean, varB, invstd, runningMean, runningVar };
}

export function bnApplyRef(
  x: ArrayLike<number>,
  n: number,
  c: number,
  hw: number,
  mean: ArrayLike<number>,
  invstd: ArrayLike<number>,
  gamma: ArrayLike<number> | null,
  beta: ArrayLike<number> | null,
): Float64Array {
  const y = new Float64Array(n * c * hw);
  for (let i = 0; i < y.length; i++) {
    const ch = Math.floor(i / hw) % c;
    const xh = (x[i] - mean[ch]) * invstd[ch];
    y[i] = gamma && beta ? xh * gamma[ch] + beta[ch] : xh;
  }
  return y;
}

export function bnEvalRef(
  x: ArrayLike<number>,
  n: number,
  c: number,
  hw: number,
  gamma: ArrayLike<number> | null,
  beta: ArrayLike<number> | null,
  rm: ArrayLike<number>,
  rv: ArrayLike<number>,
  eps: number,
): Float64Array {
  return bnApplyRef(x, n, c, hw, rm, Array.from(rv, (v) => 1 / Math.sqrt(v + eps)), gamma, beta);
}

/** Analytic training-mode backward from the float64 batch statistics. */
export function bnBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  n: number,
  c: number,
  hw: number,
  gamma: ArrayLike<number> | null,
  eps: number,
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const cnt = n * hw;
  const st = bnTrainRef(x, n, c, hw, null, null, new Float64Array(c), new Float64Array(c), 0, eps);
  const dbeta = new Float64Array(c);
  const dgamma = new Float64Array(c);
  for (let i = 0; i < dy.length; i++) {
    const ch = Math.floor(i / hw) % c;
    dbeta[ch] += dy[i];
    dgamma[ch] += dy[i] * (x[i] - st.mean[ch]) * st.invstd[ch];
  }
  const dx = new Float64Array(dy.length);
  for (let i = 0; i < dy.length; i++) {
    const ch = Math.floor(i / hw) % c;
    const xh = (x[i] - st.mean[ch]) * st.invstd[ch];
    const g = gamma ? gamma[ch] : 1;
    dx[i] = g * st.invstd[ch] * (dy[i] - dbeta[ch] / cnt - xh * (dgamma[ch] / cnt));
  }
  return { dx, dgamma, dbeta };
}

// ---------------------------------------------------------------------------------------------
// Gradient checks

/**
 * Central finite differences of L(v) = sum(dy * f(v)) at the given coordinates of v (float64).
 * `f` must be the float64 forward reference as a function of v alone.
 */
export function finiteDiff(
  f: (v: Float64Array) => ArrayLike<number>,
  v: ArrayLike<number>,
  dy: ArrayLike<number>,
  coords: readonly number[],
  h = 1e-5,
): Float64Array {
  const base = Float64Array.from(v);
  const loss = (a: Float64Array) => {
    const y = f(a);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += dy[i] * y[i];
    return s;
  };
  const out = new Float64Array(coords.length);
  coords.forEach((c, k) => {
    const old = base[c];
    base[c] = old + h;
    const lp = loss(base);
    base[c] = old - h;
    const lm = loss(base);
    base[c] = old;
    out[k] = (lp - lm) / (2 * h);
  });
  return out;
}

/** Up to `max` distinct coordinates in [0, n), spread over the range, seeded. */
export function sampleCoords(n: number, max: number, seed: number): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const out = new Set<number>();
  let s = (seed * 2654435761) >>> 0 || 1;
  while (out.size < max) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.add(s % n);
  }
  return [...out].sort((a, b) => a - b);
}

/** Max |a - b| relative to the largest |b| (and at least `floor`). */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1): number {
  let scale = floor;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]));
  return e / scale;
}

/** Fails with a message naming `what` when maxRelErr(got, want, floor) exceeds tol. */
export function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string, floor = 1): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  const e = maxRelErr(got, want, floor);
  if (!(e <= tol)) {
    let worst = 0;
    for (let i = 0; i < got.length; i++) if (Math.abs(got[i] - want[i]) > Math.abs(got[worst] - want[worst])) worst = i;
    throw new Error(`${what}: relative error ${e.toExponential(2)} > ${tol} (element ${worst}: got ${got[worst]}, want ${want[worst]})`);
  }
}

/** True when two float arrays hold the same bits. */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

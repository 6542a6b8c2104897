// The formulas scripts/make-fixtures.py fills weights and inputs with, reproduced on the host so the
// PyTorch fixtures need not store big weights.

export type FillEntry = [key: string, shape: number[], a: number, b: number, sum: number];

export interface InputSpec {
  shape: number[];
  terms: [amp: number, freq: number, phase: number, chirp: number][];
}

/**
 * v_i = f32(a + b * sin(0.37 i + 1.1 k + 0.0123 i^2)), in float64 with exactly numpy's order of
 * operations (so only sin's last-ulp differences can show, and the f32 rounding hides them). The chirp
 * term keeps weight matrices from being rank 2 (a pure sinusoid in i would be).
 */
export function formula(shape: readonly number[], a: number, b: number, k: number): Float32Array {
  const n = shape.reduce((p, d) => p * d, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = a + b * Math.sin(0.37 * i + 1.1 * k + 0.0123 * i * i);
  return out;
}

/** x_i = f32(sum over terms of amp * sin(freq * i + phase + chirp * i^2)), summed left to right from 0. */
export function inputValues(spec: InputSpec): Float32Array {
  const n = spec.shape.reduce((p, d) => p * d, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = 0;
    for (const [amp, freq, phase, chirp] of spec.terms) v = v + amp * Math.sin(freq * i + phase + chirp * i * i);
    out[i] = v;
  }
  return out;
}

/**
 * got vs want: norm-wise ||got - want|| / ||want|| <= rtol, and element-wise
 * |got_i - want_i| <= rtol * |want_i| + floor, where floor defaults to rtol * max|want| / 10 (a small
 * absolute floor for the elements that cancel to near zero). Appends a line to `report` and returns
 * the norm-wise error. An all-zero reference must be matched exactly.
 */
export function expectNearFixture(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  what: string,
  o: { rtol: number; floor?: number; report?: string[] },
): number {
  const { rtol } = o;
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, want ${want.length}`);
  let d2 = 0;
  let w2 = 0;
  let wmax = 0;
  let dmax = 0;
  for (let i = 0; i < want.length; i++) {
    const d = got[i] - want[i];
    d2 += d * d;
    w2 += want[i] * want[i];
    wmax = Math.max(wmax, Math.abs(want[i]));
    dmax = Math.max(dmax, Math.abs(d));
  }
  const rel = w2 > 0 ? Math.sqrt(d2) / Math.sqrt(w2) : d2 > 0 ? Infinity : 0;
  o.report?.push(`${what}: ${rel.toExponential(2)}, ${dmax.toExponential(2)} (max |want| ${wmax.toPrecision(3)})`);
  if (!(rel <= rtol)) throw new Error(`${what}: norm-wise relative error ${rel.toExponential(2)} > ${rtol}`);
  const floor = o.floor ?? (rtol * wmax) / 10;
  for (let i = 0; i < want.length; i++) {
    const tol = rtol * Math.abs(want[i]) + floor;
    if (!(Math.abs(got[i] - want[i]) <= tol)) {
      throw new Error(`${what}: element ${i}: got ${got[i]}, want ${want[i]} (tolerance ${tol.toExponential(2)})`);
    }
  }
  return rel;
}

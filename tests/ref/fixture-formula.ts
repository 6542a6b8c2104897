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

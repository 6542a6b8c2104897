// Gradient check: autograd on the GPU against central finite differences of a float64 reference.
// The scalar checked is L = sum(f(x...) * r) for a fixed random r, so every output element counts.
import { fromArray, keep, tidy, type Tensor } from '../../src/tensor/index.js';
import { backward } from '../../src/autograd/tape.js';
import * as F from '../../src/autograd/functional.js';
import { expectClose, numel, seededValues } from './arb.js';

export interface GradCase {
  name: string;
  shapes: number[][];
  /** The op on GPU tensors (through autograd). */
  gpu: (xs: Tensor[]) => Tensor;
  /** The same op in float64 on flat arrays; returns the flat output. */
  ref: (xs: Float64Array[]) => Float64Array;
  /** Inputs to differentiate (default all). */
  wrt?: number[];
  /** Input generator (default uniform [-2, 2]). */
  init?: (i: number, n: number, seed: number) => Float32Array;
  rtol?: number;
  atol?: number;
}

export async function gradCheck(c: GradCase, seed: number): Promise<void> {
  const hosts = c.shapes.map((s, i) => (c.init ? c.init(i, numel(s), seed + i) : seededValues(numel(s), seed + i)));
  const wrt = c.wrt ?? c.shapes.map((_, i) => i);
  const xs = hosts.map((h, i) => {
    const t = keep(fromArray(h, c.shapes[i]));
    t.requiresGrad = wrt.includes(i);
    return t;
  });
  const y0 = c.ref(hosts.map((h) => Float64Array.from(h)));
  const r = seededValues(y0.length, seed + 99, -1, 1);
  tidy(() => {
    const y = c.gpu(xs);
    if (y.size !== y0.length) throw new Error(`${c.name}: GPU output has ${y.size} elements, reference ${y0.length}`);
    const loss = F.sum(F.mul(F.reshape(y, [y.size]), fromArray(r)));
    backward(loss);
  });
  for (const i of wrt) {
    const got = await xs[i].grad!.toArray();
    const want = new Float64Array(hosts[i].length);
    const base = hosts.map((h) => Float64Array.from(h));
    for (let j = 0; j < hosts[i].length; j++) {
      const h = 1e-4 * Math.max(1, Math.abs(base[i][j]));
      const orig = base[i][j];
      base[i][j] = orig + h;
      const yp = c.ref(base);
      base[i][j] = orig - h;
      const ym = c.ref(base);
      base[i][j] = orig;
      let d = 0;
      for (let k = 0; k < yp.length; k++) d += ((yp[k] - ym[k]) / (2 * h)) * r[k];
      want[j] = d;
    }
    expectClose(got, want, c.rtol ?? 2e-3, c.atol ?? 2e-4, `${c.name} d/dx${i}`);
  }
  for (const x of xs) x.dispose();
}

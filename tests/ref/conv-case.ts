// A random conv test case (PyTorch-style arguments, Keras 'same' included) and its resolved float64
// reference geometry, shared by the dense and sparse conv tests.
import type { Padding2d } from '../../src/tensor/ops/conv.js';
import type { ConvRefGeom } from './conv-ref.js';

export interface ConvCase {
  n: number;
  cin: number;
  cout: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  padding: Padding2d;
  bias: boolean;
  seed: number;
}

/** The spec's 'same' rule, written out independently of the implementation. */
export function sameRef(inSize: number, k: number, s: number, d: number): [number, number] {
  const out = Math.ceil(inSize / s);
  const total = Math.max((out - 1) * s + (k - 1) * d + 1 - inSize, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

export function refGeom(c: ConvCase): ConvRefGeom {
  let pad: [number, number, number, number];
  const p = c.padding;
  if (p === 'valid') pad = [0, 0, 0, 0];
  else if (p === 'same') {
    const [t, b] = sameRef(c.h, c.kh, c.sh, c.dh);
    const [l, r] = sameRef(c.w, c.kw, c.sw, c.dw);
    pad = [t, l, b, r];
  } else if (typeof p === 'number') pad = [p, p, p, p];
  else if (p.length === 2) pad = [p[0], p[1], p[0], p[1]];
  else pad = [p[0], p[1], p[2], p[3]];
  return { n: c.n, cin: c.cin, h: c.h, w: c.w, cout: c.cout, kh: c.kh, kw: c.kw, sh: c.sh, sw: c.sw, dh: c.dh, dw: c.dw, pad };
}

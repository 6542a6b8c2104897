// A random conv test case (PyTorch-style arguments, Keras 'same' included) and its resolved float64
// reference geometry, shared by the dense and sparse conv tests.
import type { Padding2d } from '../../src/tensor/ops/conv.js';
import fc from 'fast-check';
import { convOut, type ConvRefGeom } from './conv-ref.js';

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

const small = fc.integer({ min: 0, max: 2 });
/** Every padding form: symmetric, [ph, pw], [top, left, bottom, right], 'same', 'valid'. */
export const paddingArb: fc.Arbitrary<Padding2d> = fc.oneof(
  small,
  fc.tuple(small, small),
  fc.tuple(small, small, small, small),
  fc.constant('same' as const),
  fc.constant('valid' as const),
);

/** The fields of a random conv case (odd sizes, strides, dilations, every padding form, batch 1-3). */
export const convCaseFields = {
  n: fc.constantFrom(1, 2, 3),
  cin: fc.integer({ min: 1, max: 5 }),
  cout: fc.constantFrom(1, 3, 8, 13, 17),
  h: fc.integer({ min: 1, max: 11 }),
  w: fc.integer({ min: 1, max: 11 }),
  kh: fc.integer({ min: 1, max: 5 }),
  kw: fc.integer({ min: 1, max: 5 }),
  sh: fc.integer({ min: 1, max: 3 }),
  sw: fc.integer({ min: 1, max: 3 }),
  dh: fc.integer({ min: 1, max: 2 }),
  dw: fc.integer({ min: 1, max: 2 }),
  padding: paddingArb,
  bias: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
};

/** Cases whose output is not empty. */
export function hasOutput(c: ConvCase): boolean {
  const [oh, ow] = convOut(refGeom(c));
  return oh >= 1 && ow >= 1;
}

export const convCaseArb: fc.Arbitrary<ConvCase> = fc.record(convCaseFields).filter(hasOutput);

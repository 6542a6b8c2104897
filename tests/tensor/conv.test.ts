// conv2d forward / backward-input / backward-weight / backward-bias against float64 references and
// finite differences, for both implementations (direct and tiled), on small random geometries.
import { afterAll, describe, expect, it } from 'vitest';
import { LONG_LANE } from '../lanes.js';
import fc from 'fast-check';
import { fromArray, queue } from '../../src/tensor/index.js';
import { candidatesOf, defaultPlan, setKernelOverride } from '../../src/tensor/plan.js';
import { device } from '../../src/tensor/device.js';
import {
  conv2dBackwardBias,
  conv2dBackwardInput,
  conv2dBackwardWeight,
  conv2dForward,
  conv2dGeometry,
  conv2dOutputShape,
  samePadding1d,
  samePadding2d,
  wgradPlan,
  type ConvImpl,
  type Conv2dOptions,
  type Padding2d,
} from '../../src/tensor/ops/conv.js';
import { seededValues } from '../ref/arb.js';
import {
  channelSumRef,
  conv2dBackwardInputRef,
  conv2dBackwardWeightRef,
  conv2dRef,
  convOut,
  expectNear,
  finiteDiff,
  sameBits,
  sampleCoords,
  type ConvRefGeom,
} from '../ref/conv-ref.js';
import { convCaseArb, paddingArb, refGeom, type ConvCase } from '../ref/conv-case.js';

type Case = ConvCase;

function opts(c: Case): Conv2dOptions {
  return { stride: [c.sh, c.sw], dilation: [c.dh, c.dw], padding: c.padding };
}

const caseArb: fc.Arbitrary<Case> = convCaseArb;

interface Data {
  xs: Float32Array;
  ws: Float32Array;
  bs: Float32Array;
  dys: Float32Array;
  g: ConvRefGeom;
  xShape: number[];
  wShape: number[];
  yShape: number[];
}

function data(c: Case): Data {
  const g = refGeom(c);
  const [oh, ow] = convOut(g);
  const xShape = [c.n, c.cin, c.h, c.w];
  const wShape = [c.cout, c.cin, c.kh, c.kw];
  const yShape = [c.n, c.cout, oh, ow];
  const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);
  return {
    g,
    xShape,
    wShape,
    yShape,
    xs: seededValues(prod(xShape), c.seed),
    ws: seededValues(prod(wShape), c.seed + 1, -1, 1),
    bs: seededValues(c.cout, c.seed + 2),
    dys: seededValues(prod(yShape), c.seed + 3),
  };
}

/** float32 accumulation over K <= 125 terms of magnitude <= 2: relative to the output's scale. */
const TOL = 2e-5;

async function checkAll(c: Case): Promise<void> {
  const d = data(c);
  const o = opts(c);
  const x = fromArray(d.xs, d.xShape);
  const w = fromArray(d.ws, d.wShape);
  const b = c.bias ? fromArray(d.bs, [c.cout]) : null;
  const dy = fromArray(d.dys, d.yShape);
  const y = conv2dForward(x, w, b, o);
  expect(y.shape).toEqual(d.yShape);
  const dx = conv2dBackwardInput(dy, w, d.xShape, o);
  const dw = conv2dBackwardWeight(dy, x, d.wShape, o);
  const db = conv2dBackwardBias(dy);
  const what = JSON.stringify(c);
  expectNear(await y.toArray(), conv2dRef(d.xs, d.ws, c.bias ? d.bs : null, d.g), TOL, `forward ${what}`);
  expectNear(await dx.toArray(), conv2dBackwardInputRef(d.dys, d.ws, d.g), TOL, `backward input ${what}`);
  expectNear(await dw.toArray(), conv2dBackwardWeightRef(d.dys, d.xs, d.g), TOL, `backward weight ${what}`);
  expectNear(await db.toArray(), channelSumRef(d.dys, c.n, c.cout, d.yShape[2] * d.yShape[3]), TOL, `backward bias ${what}`);
  for (const t of [x, w, dy, y, dx, dw, db, ...(b ? [b] : [])]) t.dispose();
}

async function gradCheck(c: Case): Promise<void> {
  const d = data(c);
  const o = opts(c);
  const x = fromArray(d.xs, d.xShape);
  const w = fromArray(d.ws, d.wShape);
  const dy = fromArray(d.dys, d.yShape);
  const dx = await conv2dBackwardInput(dy, w, d.xShape, o).toArray();
  const dw = await conv2dBackwardWeight(dy, x, d.wShape, o).toArray();
  const db = await conv2dBackwardBias(dy).toArray();
  const bs = Float64Array.from(d.bs);
  const cx = sampleCoords(d.xs.length, 12, c.seed);
  const cw = sampleCoords(d.ws.length, 12, c.seed + 7);
  const cb = sampleCoords(c.cout, 4, c.seed + 9);
  const fdx = finiteDiff((v) => conv2dRef(v, d.ws, bs, d.g), d.xs, d.dys, cx);
  const fdw = finiteDiff((v) => conv2dRef(d.xs, v, bs, d.g), d.ws, d.dys, cw);
  const fdb = finiteDiff((v) => conv2dRef(d.xs, d.ws, v, d.g), bs, d.dys, cb);
  const what = JSON.stringify(c);
  expectNear(cx.map((i) => dx[i]), fdx, 1e-4, `dx vs finite differences ${what}`);
  expectNear(cw.map((i) => dw[i]), fdw, 1e-4, `dw vs finite differences ${what}`);
  expectNear(cb.map((i) => db[i]), fdb, 1e-4, `db vs finite differences ${what}`);
  for (const t of [x, w, dy]) t.dispose();
}

describe('same padding (Keras/TF)', () => {
  it('matches worked examples', () => {
    expect(samePadding1d(5, 3, 2)).toEqual({ out: 3, before: 1, after: 1 });
    expect(samePadding1d(6, 3, 2)).toEqual({ out: 3, before: 0, after: 1 });
    expect(samePadding1d(7, 1, 3)).toEqual({ out: 3, before: 0, after: 0 });
    expect(samePadding1d(256, 3, 1)).toEqual({ out: 256, before: 1, after: 1 });
    expect(samePadding1d(10, 3, 1, 2)).toEqual({ out: 10, before: 2, after: 2 });
    expect(samePadding1d(8, 4, 1)).toEqual({ out: 8, before: 1, after: 2 });
    expect(samePadding2d([5, 6], 3, 2)).toEqual([1, 0, 1, 1]);
  });
  it('gives out = ceil(in / stride) for any kernel, stride and dilation', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        (n, k, s, d) => {
          const shape = conv2dOutputShape([1, 1, n, n + 1], [1, 1, k, k], { stride: s, dilation: d, padding: 'same' });
          expect(shape).toEqual([1, 1, Math.ceil(n / s), Math.ceil((n + 1) / s)]);
        },
      ),
    );
  });
});

describe('conv2d geometry', () => {
  it('follows PyTorch output sizes and rejects bad arguments', () => {
    expect(conv2dOutputShape([2, 3, 224, 224], [64, 3, 7, 7], { stride: 2, padding: 3 })).toEqual([2, 64, 112, 112]);
    expect(conv2dOutputShape([1, 1, 10, 9], [1, 1, 3, 3], { padding: [1, 2, 0, 1], dilation: [2, 1] })).toEqual([1, 1, 7, 10]);
    expect(() => conv2dGeometry([1, 3, 8, 8], [4, 2, 3, 3])).toThrow(/channels/);
    expect(() => conv2dGeometry([1, 3, 8, 8], [4, 3, 3, 3], { groups: 3 })).toThrow(/groups/);
    expect(() => conv2dGeometry([1, 3, 2, 2], [4, 3, 5, 5])).toThrow(/smaller/);
    expect(() => conv2dGeometry([1, 3, 8, 8], [4, 3, 3, 3], { padding: -1 })).toThrow(/non-negative/);
    expect(() => conv2dGeometry([1, 3, 8, 8], [4, 3, 3, 3], { stride: 0 })).toThrow(/>= 1/);
  });
});

const IMPLS: ConvImpl[] = ['direct', 'tiled'];
afterAll(() => setKernelOverride(null));

for (const impl of IMPLS) {
  describe(`conv2d (${impl})`, () => {
    const use = () => setKernelOverride(`conv:${impl}`);

    it('forward and all backwards match float64 references on random geometries', async () => {
      use();
      await fc.assert(fc.asyncProperty(caseArb, checkAll), { numRuns: 25 });
    });

    it('backwards match finite differences of the float64 forward', async () => {
      use();
      await fc.assert(fc.asyncProperty(caseArb, gradCheck), { numRuns: 8 });
    });

    it('handles the edge cases: 1x1, kernel = input, batch 1, asymmetric same at stride 2 and 3', async () => {
      use();
      const base = { n: 1, cin: 2, cout: 3, dh: 1, dw: 1, bias: true, seed: 5 };
      const cases: Case[] = [
        { ...base, h: 7, w: 5, kh: 1, kw: 1, sh: 1, sw: 1, padding: 0 },
        { ...base, h: 5, w: 4, kh: 5, kw: 4, sh: 1, sw: 1, padding: 'valid' },
        { ...base, n: 2, h: 8, w: 7, kh: 3, kw: 3, sh: 2, sw: 2, padding: 'same' },
        { ...base, n: 3, h: 10, w: 11, kh: 5, kw: 5, sh: 3, sw: 3, padding: 'same' },
        { ...base, h: 9, w: 9, kh: 4, kw: 2, sh: 2, sw: 3, dh: 2, dw: 2, padding: 'same' },
        { ...base, h: 6, w: 6, kh: 3, kw: 3, sh: 1, sw: 1, padding: [2, 0, 0, 2] },
      ];
      for (const c of cases) {
        await checkAll(c);
        await gradCheck(c);
      }
    });

    it('wide layers use every tile shape (Cout and Cin up to 70, stride 1 and 2)', async () => {
      use();
      const base = { n: 2, h: 6, w: 5, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, padding: 1 as Padding2d, bias: true, seed: 11 };
      for (const [cin, cout, stride] of [
        [24, 70, 1],
        [40, 33, 2],
        [70, 9, 2],
        [9, 16, 1],
      ])
        await checkAll({ ...base, cin, cout, sh: stride, sw: stride });
    });

    it('splits the weight-gradient reduction and sums the splits in a fixed order (same bits twice)', async () => {
      use();
      const c: Case = { n: 2, cin: 3, cout: 5, h: 24, w: 23, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, padding: 'same', bias: true, seed: 3 };
      const d = data(c);
      const plan = wgradPlan(conv2dGeometry(d.xShape, d.wShape, opts(c)));
      expect(plan.impl).toBe(impl);
      expect(plan.splits).toBeGreaterThan(1);
      await checkAll(c);
      const x = fromArray(d.xs, d.xShape);
      const w = fromArray(d.ws, d.wShape);
      const b = fromArray(d.bs, [c.cout]);
      const dy = fromArray(d.dys, d.yShape);
      const run = async () => [
        await conv2dForward(x, w, b, opts(c)).toArray(),
        await conv2dBackwardInput(dy, w, d.xShape, opts(c)).toArray(),
        await conv2dBackwardWeight(dy, x, d.wShape, opts(c)).toArray(),
        await conv2dBackwardBias(dy).toArray(),
      ];
      const first = await run();
      const second = await run();
      first.forEach((a, i) => expect(sameBits(a as Float32Array, second[i] as Float32Array)).toBe(true));
    });
  });
}

describe('conv2d tiles meant for large GPUs', () => {
  // Correct everywhere, even if only a tuner on a big GPU would pick them: checked here on small shapes.
  for (const tile of ['128x64', '128x128']) {
    it(`tiled:${tile} matches the float64 references (forward, both backwards)`, async () => {
      setKernelOverride(`conv:tiled:${tile}`);
      try {
        const base = { n: 2, h: 7, w: 6, kh: 3, kw: 3, dh: 1, dw: 1, padding: 1 as Padding2d, bias: true, seed: 17 };
        await checkAll({ ...base, cin: 5, cout: 70, sh: 1, sw: 1 });
        await checkAll({ ...base, cin: 9, cout: 3, sh: 2, sw: 2 });
      } finally {
        setKernelOverride(null);
      }
    });
  }
});

describe('conv2d implementations agree', () => {
  it('direct and tiled give the same values up to float32 rounding', async () => {
    const c: Case = { n: 2, cin: 4, cout: 9, h: 9, w: 10, kh: 3, kw: 5, sh: 2, sw: 1, dh: 1, dw: 2, padding: 'same', bias: true, seed: 21 };
    const d = data(c);
    const x = fromArray(d.xs, d.xShape);
    const w = fromArray(d.ws, d.wShape);
    const dy = fromArray(d.dys, d.yShape);
    const out: Float32Array[][] = [];
    for (const impl of IMPLS) {
      setKernelOverride(`conv:${impl}`);
      out.push([
        (await conv2dForward(x, w, null, opts(c)).toArray()) as Float32Array,
        (await conv2dBackwardInput(dy, w, d.xShape, opts(c)).toArray()) as Float32Array,
        (await conv2dBackwardWeight(dy, x, d.wShape, opts(c)).toArray()) as Float32Array,
      ]);
    }
    setKernelOverride(null);
    out[0].forEach((a, i) => expectNear(a, out[1][i], TOL, `pass ${i}`));
    await queue.sync();
  });

  it('rejects dtype and shape mismatches with a message', () => {
    const x = fromArray(new Float32Array(2 * 3 * 5 * 5), [2, 3, 5, 5]);
    const w = fromArray(new Float32Array(4 * 3 * 3 * 3), [4, 3, 3, 3]);
    expect(() => conv2dForward(x, w, fromArray(new Float32Array(3), [3]))).toThrow(/bias/);
    expect(() => conv2dBackwardInput(fromArray(new Float32Array(8), [2, 4, 1, 1]), w, x.shape)).toThrow(/dy/);
    expect(() => conv2dForward(fromArray(new Int32Array(150), [2, 3, 5, 5]), w, null)).toThrow(/f32/);
  });
});

describe('conv2d direct register blocks', () => {
  // The static rule picks a block by the layer's rows; every block must be right on every geometry.
  const ids = (family: string) => candidatesOf(family).filter((c) => c.variant === 'direct').map((c) => c.id);
  it('every forward / input-gradient / weight-gradient block matches the float64 references', async () => {
    const fwd = ids('conv.fwd');
    const wg = ids('conv.wgrad');
    expect(fwd.length).toBeGreaterThan(1);
    try {
      for (let i = 0; i < Math.max(fwd.length, wg.length); i++) {
        const f = fwd[i % fwd.length];
        setKernelOverride(`conv.fwd:${f},conv.dgrad:${ids('conv.dgrad')[i % fwd.length]},conv.wgrad:${wg[i % wg.length]}`);
        await fc.assert(fc.asyncProperty(caseArb, checkAll), { numRuns: 4, seed: 101 + i });
        await checkAll({ n: 3, cin: 5, cout: 19, h: 9, w: 11, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, padding: 'same', bias: true, seed: 7 + i });
      }
    } finally {
      setKernelOverride(null);
    }
  });
});

describe('conv2d row-strip kernels (stride 1, rows of whole vec4s)', () => {
  const stripArb: fc.Arbitrary<Case> = fc
    .record({
      n: fc.constantFrom(1, 2),
      cin: fc.integer({ min: 1, max: 5 }),
      cout: fc.constantFrom(1, 3, 8, 13),
      h: fc.integer({ min: 1, max: 9 }),
      w: fc.constantFrom(4, 8, 12, 20),
      kh: fc.integer({ min: 1, max: 5 }),
      kw: fc.integer({ min: 1, max: 5 }),
      sh: fc.constant(1),
      sw: fc.constant(1),
      dh: fc.constant(1),
      dw: fc.constant(1),
      padding: paddingArb,
      bias: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
    })
    .filter((c) => {
      const g = refGeom(c);
      const [oh, ow] = convOut(g);
      return oh >= 1 && ow >= 1 && g.pad[0] < c.kh && g.pad[2] < c.kh && g.pad[1] < c.kw && g.pad[3] < c.kw;
    });
  const ids = candidatesOf('conv.fwd').filter((c) => c.variant === 'strip').map((c) => c.id);
  const wids = candidatesOf('conv.wgrad').filter((c) => c.variant === 'strip').map((c) => c.id);
  /** Strip kernels for the passes whose rows are whole vec4s (forward: W; input gradient: OW; weight gradient: both). */
  const spec = (c: Case, fwd: string, wgrad: string) => {
    const [, ow] = convOut(refGeom(c));
    const wpx = Number(wgrad.split(':')[1].split('x')[1]); // strip:<threads>x<pixels>x<channels>
    return [`conv.fwd:${fwd}`, ...(ow % 4 === 0 ? [`conv.dgrad:${fwd}`] : []), ...(ow % wpx === 0 ? [`conv.wgrad:${wgrad}`] : [])].join(',');
  };
  it('declares several tiles, and only for stride 1 without dilation', () => {
    expect(ids.length).toBeGreaterThan(1);
    expect(wids.length).toBeGreaterThan(0);
    const g = conv2dGeometry([1, 2, 8, 8], [3, 2, 3, 3], { stride: 2, padding: 1 });
    const dev = { isSoftware: true, subgroups: false, timestamps: false, sharedBytes: 16384, invocations: 256 };
    for (const f of ['conv.fwd', 'conv.dgrad', 'conv.wgrad']) for (const c of candidatesOf(f).filter((x) => x.variant === 'strip')) expect(c.suits!(g, dev)).toBe(false);
  });
  it('all three passes match the float64 references on random stride-1 geometries', async () => {
    try {
      await fc.assert(
        fc.asyncProperty(stripArb, async (c) => {
          setKernelOverride(spec(c, ids[0], wids[0]));
          await checkAll(c);
        }),
        { numRuns: 6 },
      );
    } finally {
      setKernelOverride(null);
    }
  });
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    const wid = wids[i % wids.length];
    it(`${id} (and weight gradient ${wid}) on 3x3, 5x5 'same' and 4x4 asymmetric 'same', and against finite differences`, async () => {
      try {
        // 16-pixel blocks suit only rows at least 16 wide; 20 leaves a partial second piece.
        const wide = Number(id.split(':')[1].split('x')[1]) >= 16;
        const cases: Case[] = [
          { n: 2, cin: 3, cout: 10, h: 7, w: wide ? 20 : 8, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, padding: 1, bias: true, seed: 3 },
          { n: 2, cin: 2, cout: 9, h: 5, w: 16, kh: 5, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, padding: 'same', bias: true, seed: 4 },
          { n: 1, cin: 2, cout: 5, h: 6, w: wide ? 20 : 12, kh: 4, kw: 4, sh: 1, sw: 1, dh: 1, dw: 1, padding: 'same', bias: true, seed: 5 },
        ];
        // The 16-pixel tiles are the slowest to compile on lavapipe (minutes on a loaded 2-core CPU): the
        // quick lane checks them on the first case; the long lane (tests/lanes.ts) on all and by finite differences.
        const full = LONG_LANE || !wide;
        for (const c of full ? cases : cases.slice(0, 1)) {
          setKernelOverride(spec(c, id, wid));
          await checkAll(c);
        }
        if (!full) return;
        setKernelOverride(spec(cases[0], id, wid));
        await gradCheck(cases[0]);
      } finally {
        setKernelOverride(null);
      }
    });
  }
  it('layers of 1-4 filters (compacted ones) take strip weight gradients, passes of 1-2 output channels 2-channel blocks, and match the float64 references', async () => {
    const cases: Case[] = [
      { n: 2, cin: 3, cout: 2, h: 6, w: 8, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, padding: 1, bias: true, seed: 11 },
      { n: 2, cin: 2, cout: 1, h: 5, w: 12, kh: 5, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, padding: 'same', bias: true, seed: 12 },
      { n: 1, cin: 3, cout: 3, h: 4, w: 8, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, padding: 1, bias: false, seed: 13 },
    ];
    for (const c of cases) {
      const g = conv2dGeometry([c.n, c.cin, c.h, c.w], [c.cout, c.cin, c.kh, c.kw], opts(c));
      if (device().info.isSoftware) {
        expect(defaultPlan('conv.wgrad', g).id).toBe(c.cout <= 2 ? 'strip:8x4x2' : 'strip:8x4x4');
        // Forward: the layer's filters are its output channels; input gradient: its input channels.
        expect(defaultPlan('conv.fwd', g).params.bn).toBe(c.cout <= 2 ? 2 : 4);
        expect(defaultPlan('conv.dgrad', g).params.bn).toBe(c.cin <= 2 ? 2 : 4);
      }
      // The static plan, whatever the adapter: every pass against float64.
      await checkAll(c);
    }
    // Three RGB channels x 3 kernel rows with 8 filters keep the direct block (equal there, and unchanged).
    if (device().info.isSoftware) expect(defaultPlan('conv.wgrad', conv2dGeometry([2, 3, 8, 8], [8, 3, 3, 3], { padding: 1 })).variant).toBe('direct');
  });
});

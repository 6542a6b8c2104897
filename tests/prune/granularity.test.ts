// Structured pruning on the host: unit layouts, whole units pruned in score order, counts met within
// half a unit, the random control at the same granularity, and 'weight' unchanged.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { countKept, onesMasks, type HostMasks } from '../../src/prune/masks.js';
import { magnitudeScores, pruneByRate, pruneToSparsity, randomMasksLike, keepCountFor } from '../../src/prune/magnitude.js';
import { describeUnit, parseGranularity, unitLayout, type Granularity } from '../../src/prune/granularity.js';
import { unitScores, type Structure } from '../../src/prune/structured.js';
import { withUnitSlack } from '../../src/prune/structure.js';
import { targetForSparsity } from '../../src/prune/invariants.js';
import {
  granularityArb,
  impScheduleArb,
  masksBinary,
  masksStructured,
  prunableModelArb,
  sameLayerCounts,
  structuredMasksArb,
  structuredRound,
  structuredSparsity,
  InvariantViolation,
  type PrunableModel,
} from '../../src/testing/index.js';

const structured = fc.constantFrom<Granularity>('block:4', 'block:8', 'block:16', 'channel', 'filter');
const structureOf = (model: PrunableModel, g: Granularity): Structure => ({ granularity: g, shapes: new Map(model.weights.map((w) => [w.key, w.shape])) });
const ws = (model: PrunableModel) => model.weights;
const maxUnits = (model: PrunableModel, g: Granularity) => model.weights.reduce((s, w) => s + unitLayout(w.shape, g).maxSize, 0);

describe('unit layouts', () => {
  it('block:4 on [10, 2, 1, 2]: 4 consecutive outputs at one tap, a short tail block of 2', () => {
    const l = unitLayout([10, 2, 1, 2], 'block:4');
    expect(l.units).toBe(3 * 4);
    // Element (o, i, ky, kx) = ((o*2 + i)*1 + ky)*2 + kx; block b at tap t has id b*4 + t.
    const at = (o: number, i: number, kx: number) => l.unitOf[(o * 2 + i) * 2 + kx];
    for (let o = 0; o < 10; o++) expect(at(o, 1, 0)).toBe(Math.floor(o / 4) * 4 + 2);
    expect([...l.size]).toEqual([4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2]);
    expect(describeUnit([10, 2, 1, 2], 'block:4', 10)).toBe('block 10 (out 8..9, in 1, ky 0, kx 0)');
  });

  it('every element belongs to exactly one unit, sizes add up, filter/channel units are rows/columns', () => {
    fc.assert(
      fc.property(prunableModelArb({ maxLayers: 2 }), granularityArb(), (model, g) => {
        for (const w of model.weights) {
          const l = unitLayout(w.shape, g);
          const count = new Int32Array(l.units);
          for (const u of l.unitOf) count[u]++;
          expect([...count]).toEqual([...l.size]);
          const perOut = w.size / w.shape[0];
          const taps = w.shape.length === 4 ? w.shape[2] * w.shape[3] : 1;
          for (let e = 0; e < w.size; e++) {
            if (g === 'filter') expect(l.unitOf[e]).toBe(Math.floor(e / perOut));
            if (g === 'channel') expect(l.unitOf[e]).toBe(Math.floor((e % perOut) / taps));
          }
        }
      }),
      { numRuns: 100 },
    );
  });

  it('parses the documented names and refuses others in one line', () => {
    expect(parseGranularity('block:8')).toBe('block:8');
    expect(() => parseGranularity('block:3')).toThrow(/^parseGranularity: spec 'block:3' is not one of 'weight', 'block:4', 'block:8', 'block:16', 'channel' or 'filter'$/);
  });

  it('unit scores: RMS for blocks, mean |w| for filters and channels (the plain L2 / L1 order within a layer)', () => {
    const s = Float32Array.from([3, 4, 1, 1, 0, 2]); // shape [2, 3]: filters = rows, channels = columns
    expect([...unitScores(s, unitLayout([2, 3], 'filter'), 'filter')]).toEqual([8 / 3, 1]);
    expect([...unitScores(s, unitLayout([2, 3], 'channel'), 'channel')]).toEqual([2, 2, 1.5]);
    const b = unitScores(s, unitLayout([2, 3], 'block:4'), 'block:4');
    expect(b[0]).toBeCloseTo(Math.sqrt((9 + 1) / 2), 12);
  });
});

describe('structured pruning', () => {
  it("'weight' through a Structure gives exactly today's masks", () => {
    fc.assert(
      fc.property(prunableModelArb(), impScheduleArb({ maxRounds: 3 }), (model, sched) => {
        const scores = magnitudeScores(model.values);
        let a = onesMasks(ws(model));
        let b = onesMasks(ws(model));
        for (let r = 0; r < sched.rounds; r++) {
          if ('rate' in sched) {
            a = pruneByRate(a, scores, sched.rate, sched.scope);
            b = pruneByRate(b, scores, sched.rate, sched.scope, structureOf(model, 'weight'));
          } else {
            a = pruneToSparsity(a, scores, sched.sparsities[r], sched.scope);
            b = pruneToSparsity(b, scores, sched.sparsities[r], sched.scope, structureOf(model, 'weight'));
          }
        }
        for (const [k, m] of a) expect(Buffer.from(b.get(k)!).equals(Buffer.from(m))).toBe(true);
        const r1 = randomMasksLike(a, 5);
        const r2 = randomMasksLike(a, 5, structureOf(model, 'weight'));
        for (const [k, m] of r1) expect(Buffer.from(r2.get(k)!).equals(Buffer.from(m))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('IMP schedules: whole units, monotone, counts within half a unit; only a layer-keeping guard may stop short', () => {
    fc.assert(
      fc.property(prunableModelArb(), structured, impScheduleArb({ maxRounds: 4 }), (model, g, sched) => {
        const st = structureOf(model, g);
        const scores = magnitudeScores(model.values);
        let m: HostMasks = onesMasks(ws(model));
        for (let r = 0; r < sched.rounds; r++) {
          const before = m;
          try {
            if ('rate' in sched) {
              m = pruneByRate(m, scores, sched.rate, sched.scope, st);
              structuredRound(before, m, sched.rate, sched.scope, st.shapes, g);
            } else {
              m = pruneToSparsity(m, scores, sched.sparsities[r], sched.scope, st);
              structuredSparsity(m, sched.sparsities[r], sched.scope, st.shapes, g);
            }
          } catch (e) {
            if (e instanceof InvariantViolation) throw e;
            // The guard (a layer keeps one unit) can only stop a round whose target is below one unit per layer.
            expect((e as Error).message).toMatch(/^cannot prune \d+ weights at .* granularity: only \d+ can go without removing a layer's last/);
            const total = [...before.values()].reduce((s, x) => s + x.length, 0);
            const keptBefore = [...before.values()].reduce((s, x) => s + countKept(x), 0);
            const target = 'rate' in sched ? keptBefore - Math.round(keptBefore * sched.rate) : keepCountFor(total, sched.sparsities[r]);
            expect(sched.scope === 'layer' || target < maxUnits(model, g)).toBe(true);
            return;
          }
          masksBinary(m);
          for (const [, x] of m) expect(countKept(x)).toBeGreaterThan(0);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('layer scope prunes a prefix of the unit-score order: no pruned unit scores above a kept one', () => {
    fc.assert(
      fc.property(prunableModelArb(), structured, fc.double({ min: 0.05, max: 0.9, noNaN: true }), (model, g, s) => {
        const st = structureOf(model, g);
        const scores = magnitudeScores(model.values);
        let m: HostMasks;
        try {
          m = pruneToSparsity(onesMasks(ws(model)), scores, s, 'layer', st);
        } catch {
          return; // the guard: checked above
        }
        for (const w of model.weights) {
          const l = unitLayout(w.shape, g);
          const us = unitScores(scores.get(w.key)!, l, g);
          let maxPruned = -Infinity;
          let minKept = Infinity;
          for (let u = 0; u < l.units; u++) {
            const e = l.unitOf.indexOf(u);
            if (m.get(w.key)![e]) minKept = Math.min(minKept, us[u]);
            else maxPruned = Math.max(maxPruned, us[u]);
          }
          expect(maxPruned).toBeLessThanOrEqual(minKept);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('a global count too fine for the units: half a unit is the documented slack, and it is reported exactly', () => {
    // Two filters of 10 weights: 25% of 20 = 5 weights is exactly half a filter; a tie prunes less.
    const values = new Map([['fc1.weight', Float32Array.from({ length: 20 }, (_, i) => (i < 10 ? 0.1 : 1))]]);
    const st: Structure = { granularity: 'filter', shapes: new Map([['fc1.weight', [2, 10]]]) };
    const m = pruneToSparsity(onesMasks([{ key: 'fc1.weight', size: 20 }]), magnitudeScores(values), 0.25, 'global', st);
    expect(countKept(m.get('fc1.weight')!)).toBe(20);
    expect(withUnitSlack(targetForSparsity(m, 0.25, 'global'), st.shapes, 'filter')).toMatchObject({ kept: 15, slack: 5 });
    const m2 = pruneToSparsity(onesMasks([{ key: 'fc1.weight', size: 20 }]), magnitudeScores(values), 0.3, 'global', st);
    expect([...m2.get('fc1.weight')!]).toEqual(Array.from({ length: 20 }, (_, i) => (i < 10 ? 0 : 1)));
  });

  it('random control at a granularity: whole units, the ticket\'s per-layer counts, seeded', () => {
    fc.assert(
      fc.property(
        prunableModelArb().chain((model) => structured.chain((g) => structuredMasksArb(model.weights, g, { min: 0.1 }).map((masks) => ({ model, g, masks })))),
        fc.nat(),
        ({ model, g, masks }, seed) => {
          const st = structureOf(model, g);
          const r = randomMasksLike(masks, seed, st);
          masksStructured(r, st.shapes, g);
          sameLayerCounts(r, masks);
          const again = randomMasksLike(masks, seed, st);
          for (const [k, x] of r) expect(Buffer.from(again.get(k)!).equals(Buffer.from(x))).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('masksStructured names the layer and the unit of a broken block', () => {
    const shapes = new Map([['conv2.weight', [16, 2, 3, 3]]]);
    const m = new Uint8Array(16 * 2 * 9).fill(1);
    // Output 9 at (in 1, ky 2, kx 0): block 1 of that tap; the offence points at the block's first element (output 8).
    m[(9 * 2 + 1) * 9 + 6] = 0;
    expect(() => masksStructured(new Map([['conv2.weight', m]]), shapes, 'block:8')).toThrow(
      'masksStructured: conv2.weight_mask[159] is in block 33 (out 8..15, in 1, ky 2, kx 0), which keeps 7 of its 8 weights: not block:8-structured',
    );
  });
});

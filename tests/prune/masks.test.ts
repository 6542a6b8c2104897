// Mask invariants as properties (pure host logic: pruning decisions are exact integer bookkeeping).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { countKept, loadMasks, onesMasks, saveMasks, sparsityReport, type HostMasks, type PrunableWeight } from '../../src/prune/masks.js';
import { keepCountFor, magnitudeScores, pruneByRate, pruneToSparsity, randomMasksLike, sparsityAfter } from '../../src/prune/magnitude.js';
import { exactRound, exactSparsity, impScheduleArb, masksArb, masksBinary, masksMonotone, prunedScoreLowest, prunableModelArb, prunedStayZero, sameLayerCounts, sameMask, InvariantViolation, type PrunableModel } from '../../src/testing/index.js';

/** Prunable weights as the pruning code sees them (no GPU layer behind them). */
function setup(model: PrunableModel): { ws: PrunableWeight[]; weights: Map<string, Float32Array> } {
  return { ws: model.weights.map((w) => ({ ...w, layer: null as never })), weights: model.values };
}

const total = (m: HostMasks) => [...m.values()].reduce((s, a) => s + a.length, 0);
const kept = (m: HostMasks) => [...m.values()].reduce((s, a) => s + countKept(a), 0);

describe('mask invariants', () => {
  it('IMP schedules: binary, monotone (a pruned weight never returns), exact counts, lowest scores pruned', () => {
    fc.assert(
      fc.property(prunableModelArb(), impScheduleArb(), (model, sched) => {
        const { ws, weights } = setup(model);
        let m = onesMasks(ws);
        const scores = magnitudeScores(weights);
        for (let r = 0; r < sched.rounds; r++) {
          const before = m;
          if ('rate' in sched) {
            m = pruneByRate(m, scores, sched.rate, sched.scope);
            exactRound(before, m, sched.rate, sched.scope);
          } else {
            m = pruneToSparsity(m, scores, sched.sparsities[r], sched.scope);
            masksMonotone(before, m);
            exactSparsity(m, sched.sparsities[r], sched.scope);
          }
          masksBinary(m);
          prunedScoreLowest(m, scores, sched.scope, before);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('magnitude: every pruned weight is no larger than every kept one (global), ties broken by position', () => {
    fc.assert(
      fc.property(prunableModelArb(), fc.double({ min: 0.05, max: 0.95, noNaN: true }), (model, s) => {
        const { ws, weights } = setup(model);
        const m = pruneToSparsity(onesMasks(ws), magnitudeScores(weights), s, 'global');
        prunedScoreLowest(m, magnitudeScores(weights), 'global');
        expect(kept(m)).toBe(keepCountFor(total(m), s));
      }),
      { numRuns: 150 },
    );
  });

  it('achieved sparsity equals the requested one: overall for global, per layer for layer scope', () => {
    fc.assert(
      fc.property(prunableModelArb(), fc.double({ min: 0, max: 1, noNaN: true }), (model, s) => {
        const { ws, weights } = setup(model);
        const scores = magnitudeScores(weights);
        exactSparsity(pruneToSparsity(onesMasks(ws), scores, s, 'global'), s, 'global');
        const l = pruneToSparsity(onesMasks(ws), scores, s, 'layer');
        exactSparsity(l, s, 'layer');
        for (const a of l.values()) expect(countKept(a)).toBe(keepCountFor(a.length, s));
      }),
      { numRuns: 150 },
    );
  });

  it('one-shot to sparsity s equals one IMP level at rate s; same inputs, same masks', () => {
    fc.assert(
      fc.property(prunableModelArb(), fc.double({ min: 0.01, max: 0.99, noNaN: true }), fc.constantFrom('global' as const, 'layer' as const), (model, s, scope) => {
        const { ws, weights } = setup(model);
        const scores = magnitudeScores(weights);
        const a = pruneToSparsity(onesMasks(ws), scores, s, scope);
        const b = pruneByRate(onesMasks(ws), scores, s, scope);
        sameMask(a, b);
        sameMask(b, pruneByRate(onesMasks(ws), magnitudeScores(weights), s, scope));
      }),
      { numRuns: 150 },
    );
  });

  it('random-pruning controls keep the ticket per-layer counts and are seeded', () => {
    fc.assert(
      fc.property(prunableModelArb(), fc.double({ min: 0.1, max: 0.9, noNaN: true }), fc.nat(1000), (model, s, seed) => {
        const { ws, weights } = setup(model);
        const ticket = pruneToSparsity(onesMasks(ws), magnitudeScores(weights), s, 'global');
        const r1 = randomMasksLike(ticket, seed);
        masksBinary(r1);
        sameLayerCounts(r1, ticket);
        sameMask(r1, randomMasksLike(ticket, seed));
      }),
      { numRuns: 100 },
    );
  });

  it('the property helpers fail with the first offending tensor and index', () => {
    fc.assert(
      fc.property(prunableModelArb({ minLayers: 2 }), fc.nat(), fc.double({ min: 0.2, max: 0.8, noNaN: true }), (model, pick, s) => {
        const { ws, weights } = setup(model);
        const m = pruneToSparsity(onesMasks(ws), magnitudeScores(weights), s, 'layer');
        const keys = [...m.keys()];
        const key = keys[pick % keys.length];
        const a = m.get(key)!;
        const zero = a.indexOf(0);
        fc.pre(zero >= 0);
        // A weight that is not zero where the mask is: prunedStayZero names it.
        const w = new Map([...m].map(([k, v]) => [k, new Float32Array(v.length)]));
        w.get(key)![zero] = -0;
        expect(() => prunedStayZero(m, w)).toThrow(new RegExp(`^prunedStayZero: ${key.replace('.', '\\.')}\\[${zero}\\] = -0 but is pruned`));
        // The same bit set again: the mask grew.
        const grown = new Map([...m].map(([k, v]) => [k, Uint8Array.from(v)]));
        grown.get(key)![zero] = 1;
        expect(() => masksMonotone(m, grown)).toThrow(InvariantViolation);
        expect(() => masksMonotone(m, grown)).toThrow(`[${zero}] is kept but was pruned`);
        expect(() => exactSparsity(grown, s, 'layer')).toThrow(/exactSparsity: .* keeps \d+ weights, sparsity .* says \d+/);
        expect(() => sameMask(m, grown)).toThrow(/sameMask/);
      }),
      { numRuns: 60 },
    );
  });

  it('masksArb draws masks within the density range', () => {
    const ws = [
      { key: 'a.weight', shape: [4, 3, 3, 3], size: 108 },
      { key: 'b.weight', shape: [7], size: 7 },
    ];
    fc.assert(
      fc.property(masksArb(ws, { min: 0.25, max: 0.5 }), (m) => {
        masksBinary(m);
        for (const w of ws) {
          const d = countKept(m.get(w.key)!) / w.size;
          expect(d >= 0.25 && d <= 0.5, `${w.key}: density ${d}`).toBe(true);
        }
      }),
      { numRuns: 100 },
    );
    expect(() => masksArb([{ key: 'c', shape: [3], size: 3 }], { min: 0.4, max: 0.6 })).toThrow(/no kept count of 3 entries/);
  });

  it('masks survive a save/load round trip (torch weight_mask names) and bad files name the problem', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'masks-'));
    await fc.assert(
      fc.asyncProperty(prunableModelArb(), fc.double({ min: 0, max: 1, noNaN: true }), async (model, s) => {
        const { ws, weights } = setup(model);
        const m = pruneToSparsity(onesMasks(ws), magnitudeScores(weights), s, 'layer');
        const f = path.join(dir, 'm.safetensors');
        await saveMasks(f, ws, m);
        sameMask(await loadMasks(f, ws), m);
      }),
      { numRuns: 30 },
    );
    const ws = [{ key: 'a.weight', shape: [3], size: 3, layer: null as never }];
    await expect(loadMasks(path.join(dir, 'm.safetensors'), ws)).rejects.toThrow(/no mask 'a.weight_mask'/);
  });

  it('sparsity bookkeeping: report counts, 0.8^n density, pruned weights cannot return', () => {
    expect(sparsityAfter(8, 0.2)).toBeCloseTo(1 - 0.8 ** 8, 12);
    const ws = [{ key: 'a.weight', shape: [10], size: 10, layer: null as never }];
    const m = pruneToSparsity(onesMasks(ws), new Map([['a.weight', Float32Array.from({ length: 10 }, (_, i) => i)]]), 0.5, 'global');
    const r = sparsityReport(m, 25);
    expect(r).toMatchObject({ total: 10, kept: 5, pruned: 5, sparsity: 0.5, parametersLeft: 20, parameters: 25 });
    expect(Array.from(m.get('a.weight')!)).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    expect(() => pruneToSparsity(m, new Map([['a.weight', new Float32Array(10)]]), 0.2, 'global')).toThrow(/never return/);
  });
});

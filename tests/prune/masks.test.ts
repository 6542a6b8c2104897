// Mask invariants as properties (pure host logic: pruning decisions are exact integer bookkeeping).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { countKept, loadMasks, onesMasks, saveMasks, sparsityReport, type HostMasks, type PrunableWeight } from '../../src/prune/masks.js';
import { keepCountFor, magnitudeScores, pruneByRate, pruneCount, pruneToSparsity, randomMasksLike, sparsityAfter } from '../../src/prune/magnitude.js';

/** Layers: random sizes; weights: random values with deliberate ties. */
const layersArb = fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 6 }).chain((sizes) =>
  fc.tuple(
    fc.constant(sizes),
    fc.tuple(...sizes.map((n) => fc.array(fc.oneof(fc.float({ min: -3, max: 3, noNaN: true }), fc.constantFrom(0, 0.5, -0.5)), { minLength: n, maxLength: n }))),
  ),
);

function setup(sizes: number[], vals: number[][]): { ws: PrunableWeight[]; weights: Map<string, Float32Array> } {
  const ws = sizes.map((n, i) => ({ key: `l${i}.weight`, shape: [n], size: n, layer: null as never }));
  const weights = new Map(sizes.map((_, i) => [`l${i}.weight`, Float32Array.from(vals[i])]));
  return { ws, weights };
}

const isBinary = (m: HostMasks) => [...m.values()].every((a) => a.every((v) => v === 0 || v === 1));
const total = (m: HostMasks) => [...m.values()].reduce((s, a) => s + a.length, 0);
const kept = (m: HostMasks) => [...m.values()].reduce((s, a) => s + countKept(a), 0);

describe('mask invariants', () => {
  it('IMP rounds: binary, monotone (a pruned weight never returns), exact counts (global and per layer)', () => {
    fc.assert(
      fc.property(layersArb, fc.double({ min: 0.05, max: 0.9, noNaN: true }), fc.integer({ min: 1, max: 6 }), fc.boolean(), ([sizes, vals], rate, rounds, global) => {
        const { ws, weights } = setup(sizes, vals);
        let m = onesMasks(ws);
        const scores = magnitudeScores(weights);
        for (let r = 0; r < rounds; r++) {
          const before = m;
          m = pruneByRate(m, scores, rate, global ? 'global' : 'layer');
          expect(isBinary(m)).toBe(true);
          for (const [k, a] of m) a.forEach((v, i) => expect(v <= before.get(k)![i]).toBe(true));
          if (global) expect(kept(before) - kept(m)).toBe(pruneCount(kept(before), rate));
          else for (const [k, a] of m) expect(countKept(before.get(k)!) - countKept(a)).toBe(pruneCount(countKept(before.get(k)!), rate));
        }
      }),
      { numRuns: 150 },
    );
  });

  it('magnitude: every pruned weight is no larger than every kept one (global), ties broken by position', () => {
    fc.assert(
      fc.property(layersArb, fc.double({ min: 0.05, max: 0.95, noNaN: true }), ([sizes, vals], s) => {
        const { ws, weights } = setup(sizes, vals);
        const m = pruneToSparsity(onesMasks(ws), magnitudeScores(weights), s, 'global');
        let maxPruned = -Infinity;
        let minKept = Infinity;
        for (const [k, a] of m) {
          const w = weights.get(k)!;
          a.forEach((v, i) => (v ? (minKept = Math.min(minKept, Math.abs(w[i]))) : (maxPruned = Math.max(maxPruned, Math.abs(w[i])))));
        }
        expect(maxPruned <= minKept).toBe(true);
        expect(kept(m)).toBe(keepCountFor(total(m), s));
      }),
      { numRuns: 150 },
    );
  });

  it('achieved sparsity equals the requested one: overall for global, per layer for layer scope', () => {
    fc.assert(
      fc.property(layersArb, fc.double({ min: 0, max: 1, noNaN: true }), ([sizes, vals], s) => {
        const { ws, weights } = setup(sizes, vals);
        const scores = magnitudeScores(weights);
        const g = pruneToSparsity(onesMasks(ws), scores, s, 'global');
        expect(kept(g)).toBe(keepCountFor(total(g), s));
        const l = pruneToSparsity(onesMasks(ws), scores, s, 'layer');
        for (const a of l.values()) expect(countKept(a)).toBe(keepCountFor(a.length, s));
      }),
      { numRuns: 150 },
    );
  });

  it('one-shot to sparsity s equals one IMP level at rate s; same inputs, same masks', () => {
    fc.assert(
      fc.property(layersArb, fc.double({ min: 0.01, max: 0.99, noNaN: true }), fc.boolean(), ([sizes, vals], s, global) => {
        const { ws, weights } = setup(sizes, vals);
        const scores = magnitudeScores(weights);
        const scope = global ? 'global' : 'layer';
        const a = pruneToSparsity(onesMasks(ws), scores, s, scope);
        const b = pruneByRate(onesMasks(ws), scores, s, scope);
        const c = pruneByRate(onesMasks(ws), magnitudeScores(weights), s, scope);
        for (const k of a.keys()) {
          expect(Array.from(a.get(k)!)).toEqual(Array.from(b.get(k)!));
          expect(Array.from(b.get(k)!)).toEqual(Array.from(c.get(k)!));
        }
      }),
      { numRuns: 150 },
    );
  });

  it('random-pruning controls keep the ticket per-layer counts, are seeded, and differ from the ticket', () => {
    fc.assert(
      fc.property(layersArb, fc.double({ min: 0.1, max: 0.9, noNaN: true }), fc.nat(1000), ([sizes, vals], s, seed) => {
        const { ws, weights } = setup(sizes, vals);
        const ticket = pruneToSparsity(onesMasks(ws), magnitudeScores(weights), s, 'global');
        const r1 = randomMasksLike(ticket, seed);
        const r2 = randomMasksLike(ticket, seed);
        expect(isBinary(r1)).toBe(true);
        for (const [k, a] of ticket) {
          expect(countKept(r1.get(k)!)).toBe(countKept(a));
          expect(Array.from(r1.get(k)!)).toEqual(Array.from(r2.get(k)!));
        }
      }),
      { numRuns: 100 },
    );
  });

  it('masks survive a save/load round trip (torch weight_mask names) and bad files name the problem', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'masks-'));
    await fc.assert(
      fc.asyncProperty(layersArb, fc.double({ min: 0, max: 1, noNaN: true }), async ([sizes, vals], s) => {
        const { ws, weights } = setup(sizes, vals);
        const m = pruneToSparsity(onesMasks(ws), magnitudeScores(weights), s, 'layer');
        const f = path.join(dir, 'm.safetensors');
        await saveMasks(f, ws, m);
        const back = await loadMasks(f, ws);
        for (const k of m.keys()) expect(Array.from(back.get(k)!)).toEqual(Array.from(m.get(k)!));
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

// Property-testing your own pruning score with ticketlab/testing (host only, no GPU): a SNIP-like
// saliency |w * g| plugged into ticketlab's pruning, checked on random small models and IMP schedules.
// Build with tsc and run with plain Node (fast-check must be installed beside ticketlab):
//
//   npx tsc -p . && node out/score-properties.js
//
// A violated property makes fc.assert throw with the shrunk counterexample and the helper's message,
// e.g. "masksMonotone: conv1.weight[17] is kept but was pruned at the previous level".
import fc from 'fast-check';
import { onesMasks, pruneByRate, pruneToSparsity, type Scores } from 'ticketlab/prune';
import { exactRound, exactSparsity, impScheduleArb, masksBinary, masksMonotone, prunableModelArb, prunedScoreLowest, prunedStayZero, type HostMasks, type PrunableModel } from 'ticketlab/testing';

/** The scoring function under test: |weight * gradient| (higher = more important). */
export function saliency(weights: ReadonlyMap<string, Float32Array>, grads: ReadonlyMap<string, Float32Array>): Scores {
  const out: Scores = new Map();
  for (const [k, w] of weights) {
    const g = grads.get(k)!;
    out.set(k, w.map((v, i) => Math.abs(v * g[i])));
  }
  return out;
}

/** Masked weights, as a training step leaves them: exactly +0 where pruned. */
function applyMask(weights: ReadonlyMap<string, Float32Array>, masks: HostMasks): Map<string, Float32Array> {
  return new Map([...weights].map(([k, w]) => [k, w.map((v, i) => (masks.get(k)![i] ? v : 0))]));
}

/** A model plus a gradient of the same shapes (another draw of the same arbitrary's values). */
const withGrads = prunableModelArb({ maxLayers: 4 }).chain((model: PrunableModel) =>
  fc.tuple(...model.weights.map((w) => fc.array(fc.float({ min: -1, max: 1, noNaN: true }), { minLength: w.size, maxLength: w.size }))).map((gs) => ({
    model,
    grads: new Map(model.weights.map((w, i) => [w.key, Float32Array.from(gs[i])])),
  })),
);

fc.assert(
  fc.property(withGrads, impScheduleArb({ maxRounds: 4 }), ({ model, grads }, schedule) => {
    let masks = onesMasks(model.weights);
    let weights = model.values;
    for (let r = 0; r < schedule.rounds; r++) {
      const scores = saliency(weights, grads);
      const before = masks;
      if ('rate' in schedule) {
        masks = pruneByRate(masks, scores, schedule.rate, schedule.scope);
        exactRound(before, masks, schedule.rate, schedule.scope);
      } else {
        masks = pruneToSparsity(masks, scores, schedule.sparsities[r], schedule.scope);
        exactSparsity(masks, schedule.sparsities[r], schedule.scope);
      }
      masksBinary(masks);
      masksMonotone(before, masks);
      prunedScoreLowest(masks, scores, schedule.scope, before);
      weights = applyMask(weights, masks);
      prunedStayZero(masks, weights);
    }
    return true;
  }),
  { numRuns: 200 },
);
console.log('saliency: 200 random models and schedules, every mask invariant holds');

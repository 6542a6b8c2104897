// ticketlab from a CommonJS project (what `npm init -y` writes): ticketlab is an ES module, so a
// CommonJS file loads it with a dynamic import() inside a function (top-level await is ESM-only).
// Host only: lists the vocabulary and checks a mask the way `ticketlab check` does.
//
//   npx tsc -p . && node out/index.js
import type { Granularity, Scope } from 'ticketlab/prune';
import type { ModelName, OptimizerName, ScheduleSpec } from 'ticketlab';

async function main(): Promise<void> {
  const { MODEL_NAMES } = await import('ticketlab');
  const { GRANULARITIES, firstNonBinary } = await import('ticketlab/prune');
  const model: ModelName = MODEL_NAMES[0];
  const schedule: ScheduleSpec = 'step:100:0.5';
  const optimizer: OptimizerName = 'adamw';
  const scope: Scope = 'layer';
  const granularity: Granularity = 'block:8';
  console.log(`models ${MODEL_NAMES.join(' ')}; granularities ${GRANULARITIES.join(' ')}`);
  console.log(`picked ${model} ${schedule} ${optimizer} ${scope} ${granularity}`);
  const offence = firstNonBinary(new Map([['conv1.weight', new Float32Array([1, 0, 0.5, 1])]]));
  console.log(`a mask holding 0.5: ${offence ? `${offence.tensor}[${offence.index}] ${offence.message}` : 'passed'}`);
}

// Typos are compile errors: each assignment below must fail to type-check (else tsc reports the
// expect-error directive above it as unused), so the unions cannot silently widen back to `string`.
export function typos(): [ModelName, ScheduleSpec, OptimizerName, Scope, Granularity] {
  // @ts-expect-error not a model
  const m: ModelName = 'meso5';
  // @ts-expect-error not a schedule
  const s: ScheduleSpec = 'cosin';
  // @ts-expect-error not an optimizer
  const o: OptimizerName = 'adagrad';
  // @ts-expect-error not a scope
  const c: Scope = 'local';
  // @ts-expect-error no 32-weight blocks
  const g: Granularity = 'block:32';
  return [m, s, o, c, g];
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});

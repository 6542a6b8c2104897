// Cost of bounding the steps in flight (queue.endStep, what training does) against recording every
// step before one wait (the old behaviour), interleaved in one process so machine load hits both alike.
// Usage: npx tsx bench/in-flight.ts [--model meso4] [--size 64] [--batch 32] [--steps 10] [--rounds 4] [--bound 3]
import { initDevice, closeDevice, queue } from '../src/tensor/index.js';
import { createModel, parseModelName } from '../src/nn/models/index.js';
import { trainStep } from './step.js';

const args = process.argv.slice(2);
const flag = (name: string, d: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : d;
};
const model = flag('model', 'meso4');
const size = Number(flag('size', '64'));
const batch = Number(flag('batch', '32'));
const steps = Number(flag('steps', '10'));
const rounds = Number(flag('rounds', '4'));
const bound = Number(flag('bound', '3'));

await initDevice();
const m = createModel(parseModelName(model), { size, seed: 0 });
const { step, dispose } = trainStep(m, size, batch);
step();
await queue.sync();

async function time(bound: number): Promise<{ ms: number; maxInFlight: number }> {
  let maxInFlight = 0;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    step();
    if (bound > 0) {
      await queue.endStep(bound);
      maxInFlight = Math.max(maxInFlight, queue.stepsInFlight);
    }
  }
  await queue.sync();
  return { ms: (performance.now() - t0) / steps, maxInFlight: bound > 0 ? maxInFlight : steps };
}

const rows: string[] = [];
const sums = { unbounded: 0, bounded: 0 };
for (let r = 0; r < rounds; r++) {
  // Alternate which goes first so drift in machine load does not favour one.
  const order = r % 2 === 0 ? [0, bound] : [bound, 0];
  const res: Record<number, { ms: number; maxInFlight: number }> = {};
  for (const b of order) res[b] = await time(b);
  sums.unbounded += res[0].ms;
  sums.bounded += res[bound].ms;
  rows.push(`| ${r + 1} | ${res[0].ms.toFixed(1)} | ${res[bound].ms.toFixed(1)} (max ${res[bound].maxInFlight} in flight) | ${(res[bound].ms / res[0].ms).toFixed(3)} |`);
}
console.log(`${model} ${size}px batch ${batch}, ${steps} steps per timing, ms per training step`);
console.log(`| round | unbounded | bounded (${bound}) | bounded / unbounded |`);
console.log('|---|---|---|---|');
for (const r of rows) console.log(r);
console.log(`| mean | ${(sums.unbounded / rounds).toFixed(1)} | ${(sums.bounded / rounds).toFixed(1)} | ${(sums.bounded / sums.unbounded).toFixed(3)} |`);
dispose();
m.dispose();
closeDevice();

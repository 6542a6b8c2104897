// npx tsx scripts/compare-sweeps.ts CONFIG OUT REF_OUT: exits 0 when the sweep in OUT equals the one in
// REF_OUT (see src/prune/sweep-compare.ts), else prints the differences and exits 1.
import { planSweep, readSweepConfig } from '../src/prune/sweep.js';
import { compareSweeps } from '../src/prune/sweep-compare.js';

const [config, out, ref] = process.argv.slice(2);
if (!ref) {
  process.stderr.write('usage: npx tsx scripts/compare-sweeps.ts CONFIG OUT REF_OUT\n');
  process.exit(2);
}
const plan = planSweep({ ...readSweepConfig(config), out });
const diffs = compareSweeps(plan, ref);
for (const d of diffs) process.stdout.write(`differs: ${d}\n`);
process.stdout.write(diffs.length ? `${diffs.length} differences\n` : `equal: ${plan.units.length} units, masks and weights bit for bit, same metrics, each finished once\n`);
process.exit(diffs.length ? 1 : 0);

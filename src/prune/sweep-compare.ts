// Compares two finished copies of one sweep (e.g. several workers vs one process): every unit's masks,
// start and final weights tensor for tensor, bit for bit (metadata aside: it may name the folder), its
// result.json and metrics.jsonl without timings (and, for a unit that was stopped gracefully, without its
// training metrics), and that each unit finished exactly once according to the event log. Used by the
// chaos test and scripts/slurm-test.sh (through scripts/compare-sweeps.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSafetensorsSync } from '../io/safetensors.js';
import { RUN_FILES } from '../io/run-paths.js';
import type { SweepPlan } from './sweep.js';
import { readEvents } from './units.js';

function tensorBytes(file: string): Map<string, Buffer> {
  const c = loadSafetensorsSync(file);
  return new Map(Object.entries(c.tensors).map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
}

function withoutTimings(o: Record<string, unknown>): Record<string, unknown> {
  const { seconds: _s, imagesPerSecond: _i, ...rest } = o;
  return rest;
}

/**
 * result.json and metrics.jsonl without timings. The training metrics of an epoch that was stopped and
 * resumed in the middle count only the batches after the resume (trainer.ts), so `dropTrain` leaves them
 * out for a unit that was stopped gracefully (SIGTERM, scancel: the only way to a mid-epoch checkpoint);
 * a unit killed with SIGKILL resumes from an epoch boundary and must match in them too. Validation and
 * test metrics, steps and learning rates must always match.
 */
function metricsOf(dir: string, dropTrain: boolean): { result: unknown; lines: unknown[] } {
  const result = withoutTimings(JSON.parse(fs.readFileSync(path.join(dir, RUN_FILES.result), 'utf8')));
  const lines = fs
    .readFileSync(path.join(dir, RUN_FILES.metrics), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const { train, ...rest } = withoutTimings(JSON.parse(l));
      return dropTrain ? rest : { ...rest, train };
    });
  return { result, lines };
}

/** Differences between `plan`'s sweep and the same sweep in `refOut`, as one line each; [] when equal. */
export function compareSweeps(plan: SweepPlan, refOut: string): string[] {
  const diffs: string[] = [];
  const events = readEvents(plan.config.out);
  const finishes = events.filter((e) => e.event === 'finish');
  // Units saved mid-epoch by a graceful stop (their resumed epoch's training metrics are partial), and
  // the copies of such a dense level (shareDense copies its metrics.jsonl).
  const stopped = new Set(events.filter((e) => e.event === 'interrupted').map((e) => e.unit));
  for (const u of plan.units) if (u.kind === 'dense-copy' && stopped.has(u.deps[0])) stopped.add(u.id);
  for (const u of plan.units) {
    const ref = path.join(refOut, u.id);
    if (!fs.existsSync(path.join(u.dir, RUN_FILES.result))) {
      diffs.push(`${u.id}: not finished`);
      continue;
    }
    const n = finishes.filter((e) => e.unit === u.id).length;
    if (n !== 1) diffs.push(`${u.id}: finished ${n} times`);
    if (fs.existsSync(path.join(u.dir, RUN_FILES.lock))) diffs.push(`${u.id}: lock left behind`);
    for (const f of [RUN_FILES.mask, RUN_FILES.start, RUN_FILES.final]) {
      const a = tensorBytes(path.join(ref, f));
      const b = tensorBytes(path.join(u.dir, f));
      if (JSON.stringify([...a.keys()]) !== JSON.stringify([...b.keys()])) diffs.push(`${u.id}/${f}: other tensors`);
      for (const [k, t] of a) if (!b.get(k)?.equals(t)) diffs.push(`${u.id}/${f}: ${k} differs`);
    }
    const a = metricsOf(ref, stopped.has(u.id));
    const b = metricsOf(u.dir, stopped.has(u.id));
    if (JSON.stringify(a.result) !== JSON.stringify(b.result)) diffs.push(`${u.id}/${RUN_FILES.result}: metrics differ`);
    if (JSON.stringify(a.lines) !== JSON.stringify(b.lines)) diffs.push(`${u.id}/${RUN_FILES.metrics}: ${b.lines.length} lines vs ${a.lines.length}, or other values`);
  }
  for (const r of plan.runs) if (!fs.existsSync(path.join(r.dir, RUN_FILES.done))) diffs.push(`${r.name}: no ${RUN_FILES.done}`);
  return diffs;
}

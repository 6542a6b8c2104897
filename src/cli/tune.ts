// `ticketlab tune`: fill this adapter's kernel tuning cache for a model's shapes ahead of a sweep.
import { closeDevice, initDevice } from '../tensor/device.js';
import { planFamilies } from '../tensor/plan.js';
import { describeStaleTuneKeys } from '../tensor/kernel-checks.js';
import { describeCandidates, tuneCachePath, tuneSeen } from '../tensor/tune.js';
import { createModel, MODEL_NAMES, parseModelName, type ModelName } from '../nn/models/index.js';
import { discoverShapes } from '../train/profile.js';
import { num } from './flags.js';
import { parseFlags, type Command } from './args.js';

/**
 * When `tune` (flags.ts wantsTune: --tune or TICKETLAB_TUNE=1, not --no-tune): installs this adapter's tuned kernels and times the shapes of
 * this model, size and batch that the cache lacks, before a run starts. Without it: nothing (the
 * static rules hold).
 */
export async function prepareKernels(model: ModelName, size: number, batch: number, tune: boolean, log: (m: string) => void): Promise<void> {
  if (!tune) return;
  const m = createModel(model, { size, seed: 0 });
  let seen;
  try {
    seen = await discoverShapes(m, size, batch);
  } finally {
    m.dispose();
  }
  const r = await tuneSeen(seen, {});
  const stale = describeStaleTuneKeys(r.file, Object.keys(r.stale), r.stale, 'timed again');
  if (stale) log(stale);
  log(`kernels: tuned (${Object.keys(r.tuned).length} shapes timed now in ${r.seconds.toFixed(1)} s, ${r.cached} from ${tuneCachePath()})`);
}

export const tuneCommand: Command = {
  name: 'tune',
  summary: "time the kernel candidates on a model's shapes and keep the fastest in this adapter's cache",
  help: `ticketlab tune --model M --size S --batch B [--force] [--budget SEC] [--candidates N] [--reps N] [--big]
ticketlab tune --list

Runs one training step of the model (forward, loss, backward, Adam) on a synthetic batch so that
every kernel family meets its shapes, then times the candidate kernels of each (family, shape class)
that the cache lacks: variants and tile sizes, including configurations meant for large GPUs (64-256
wide tiles) on GPUs. GPU time comes from timestamp queries (wall clock on adapters without them).
The fastest of each is written, atomically after every shape, to the cache of this adapter and driver:
  $XDG_CACHE_HOME/ticketlab/kernels-<adapter>.json   (else ~/.cache/ticketlab/)
Training, imp and profile use the cache with --tune; without it (and in tests) the static rules hold.
TICKETLAB_KERNELS overrides both (see 'ticketlab --help').

  --model NAME      ${MODEL_NAMES.join(' | ')} (default meso4)
  --size PX         input size (default 64)
  --batch N         batch size (default 32); shapes depend on it, so tune with the batch you train with
  --force           re-time shapes the cache already has
  --budget SEC      stop starting new shapes SEC seconds after the start, discovery step included
                    (default 50); shapes left untimed keep the static rule (and are timed by a later tune)
  --candidates N    candidates timed per shape (default 2 on software adapters, 8 on GPUs), most
                    promising first: the static choice, each other variant's static choice, the rest
  --reps N          timed repetitions per candidate after a warm-up, the fastest counts (default 3
                    on software adapters, 5 on GPUs)
  --big             also time configurations meant for large GPUs on a software adapter
  --list            print the kernel families and their candidates (* = meant for large GPUs) and exit
Prints each shape's winner with the candidates' times, then the time spent and the cache file.
`,
  async run(args) {
    const { values } = parseFlags(
      args,
      {
        model: { type: 'string', default: 'meso4' },
        size: { type: 'string', default: '64' },
        batch: { type: 'string', default: '32' },
        force: { type: 'boolean', default: false },
        budget: { type: 'string', default: '50' },
        candidates: { type: 'string' },
        reps: { type: 'string' },
        big: { type: 'boolean', default: false },
        list: { type: 'boolean', default: false },
      },
      'tune',
    );
    if (!(MODEL_NAMES as readonly string[]).includes(values.model!)) throw new Error(`tune: --model '${values.model}' is not one of ${MODEL_NAMES.join(', ')}`);
    const size = num(values, 'size', { int: true, min: 8 });
    const batch = num(values, 'batch', { int: true, min: 1 });
    const budgetS = num(values, 'budget', { min: 0 });
    const maxCandidates = values.candidates !== undefined ? num(values, 'candidates', { int: true, min: 1 }) : undefined;
    const reps = values.reps !== undefined ? num(values, 'reps', { int: true, min: 1 }) : undefined;
    await initDevice();
    try {
      if (values.list) {
        // Families register when their launchers load; the model import above loaded them all.
        for (const f of planFamilies()) process.stdout.write(`${f.padEnd(12)} ${describeCandidates(f)}\n`);
        return 0;
      }
      const t0 = performance.now();
      const model = createModel(parseModelName(values.model!), { size, seed: 0 });
      let seen;
      try {
        seen = await discoverShapes(model, size, batch);
      } finally {
        model.dispose();
      }
      const r = await tuneSeen(seen, {
        force: values.force,
        // The budget covers the whole command, discovery step included.
        budgetS: Math.max(0, budgetS - (performance.now() - t0) / 1000),
        maxCandidates,
        reps,
        includeBig: values.big ? true : undefined,
        log: (l) => process.stdout.write(`  ${l}\n`),
      });
      const total = (performance.now() - t0) / 1000;
      process.stdout.write(
        `${values.model} ${size}px batch ${batch}: ${seen.length} shape classes, ${Object.keys(r.tuned).length} tuned, ${r.cached} already cached, ` +
          `${r.skipped.length} left to the static rule; tuning ${r.seconds.toFixed(1)} s (${total.toFixed(1)} s with the discovery step)\n` +
          `cache: ${tuneCachePath()}\n`,
      );
    } finally {
      closeDevice();
    }
    return 0;
  },
};

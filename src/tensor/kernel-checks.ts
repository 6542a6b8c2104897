// Checks of what users hand the planner from outside: TICKETLAB_KERNELS entries must name a registered
// kernel family (an unknown variant was already refused, an unknown family silently did nothing), and
// tuning-cache entries must name kernels that still exist (a cache written by another version would
// otherwise count as "from cache" while the static rules ran instead).
import { candidatesOf, familyOfKey, parseKernelOverride, planFamilies, type PlanKey } from './plan.js';

/**
 * Throws one line naming the first TICKETLAB_KERNELS entry whose family (or family prefix, as 'conv' for
 * conv.fwd) is not registered. Call it once every kernel module is loaded (the CLI does, at start).
 */
export function checkKernelFamilies(text = process.env.TICKETLAB_KERNELS ?? '', what = 'TICKETLAB_KERNELS'): void {
  const families = planFamilies();
  const prefixes = [...new Set(families.map((f) => f.split('.')[0]))];
  for (const e of parseKernelOverride(text, what)) {
    if (families.some((f) => f === e.selector || f.startsWith(`${e.selector}.`))) continue;
    throw new Error(`${what}: '${e.selector}:${e.variant}' names no kernel family '${e.selector}' (families: ${[...new Set([...prefixes, ...families])].sort().join(', ')})`);
  }
}

/** Cache keys (of `entries`) whose chosen kernel is not a registered candidate of the key's family. */
export function staleTuneKeys(entries: Readonly<Record<PlanKey, { choice: string }>>): PlanKey[] {
  return Object.entries(entries)
    .filter(([key, e]) => !candidatesOf(familyOfKey(key)).some((c) => c.id === e.choice))
    .map(([key]) => key)
    .sort();
}

const reported = new Set<string>();

/**
 * One line about a cache's stale entries, the first time they are met in this process (null after, or
 * when there are none): they are timed again (tuneSeen) or left to the static rules (useTuneCache).
 */
export function describeStaleTuneKeys(file: string, stale: readonly PlanKey[], entries: Readonly<Record<PlanKey, { choice: string }>>, fate: string): string | null {
  if (!stale.length || reported.has(file)) return null;
  reported.add(file);
  const k = stale[0];
  return `tuning cache ${file}: ${stale.length} entr${stale.length === 1 ? 'y names a kernel' : 'ies name kernels'} that no longer exist (e.g. ${k}: '${entries[k].choice}'); ${fate}`;
}

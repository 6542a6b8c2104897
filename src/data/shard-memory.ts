// The process's memory budget for whole shard files held in memory by the decoded cache
// (shard-cache.ts): one budget for every cache of the process, set by TICKETLAB_CACHE_MEM or
// setShardMemoryBudget, by default a quarter of RAM or half of what is free, whichever is less. Under
// the default, a shard is also not taken when the machine's available memory would fall below a
// fifth of RAM: sweep workers on one machine each start with the same default, before any of them
// has taken memory, so the budget alone could add up to more than the machine has.
import * as os from 'node:os';

const MEM_ENV = 'TICKETLAB_CACHE_MEM';
const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * Bytes from a budget spelling: a byte count with an optional K/M/G/T suffix (powers of 1024, 'B' or
 * 'iB' after it allowed), or a percentage of the machine's RAM ('30%'); '0' keeps no shard in memory.
 * `what` names the setting in the one-line error for anything else.
 */
export function parseMemoryBudget(spec: string, what = MEM_ENV): number {
  const t = spec.trim().toLowerCase();
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (pct && Number(pct[1]) <= 100) return Math.floor((Number(pct[1]) / 100) * os.totalmem());
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/.exec(t);
  if (!m) throw new Error(`${what}=${spec}: expected bytes (e.g. 512M, 2G, 1.5GiB) or a percentage of RAM (e.g. 25%)`);
  return Math.floor(Number(m[1]) * UNITS[m[2]]);
}

let budget: number | null = null;
/** whether the budget was set (environment or setShardMemoryBudget) rather than defaulted */
let explicit = false;
/** Under the default budget, the machine's available memory a shard copy must leave. */
const FLOOR_OF_RAM = 0.2;
let resident = 0;

/** Bytes of shard files this process may keep in memory (all caches together). */
export function shardMemoryBudget(): number {
  if (budget === null) {
    const env = process.env[MEM_ENV];
    // The default leaves room for the model, the decode pool and other processes of a sweep.
    explicit = env !== undefined && env !== '';
    budget = explicit ? parseMemoryBudget(env as string) : Math.floor(Math.min(os.totalmem() / 4, os.freemem() / 2));
  }
  return budget;
}

/** Sets the budget (bytes; null: back to TICKETLAB_CACHE_MEM or the default). Copies held already stay. */
export function setShardMemoryBudget(bytes: number | null): void {
  if (bytes !== null && !(Number.isFinite(bytes) && bytes >= 0)) throw new Error(`shard memory budget must be a byte count >= 0, got ${bytes}`);
  budget = bytes === null ? null : Math.floor(bytes);
  explicit = bytes !== null;
}

/** Whether a shard file of `bytes` may be held in memory now (the budget, and under the default the floor). */
export function shardMemoryRoom(bytes: number): boolean {
  if (resident + bytes > shardMemoryBudget()) return false;
  return explicit || os.freemem() - bytes >= FLOOR_OF_RAM * os.totalmem();
}

/** Bytes of shard files held in memory by this process now. */
export function shardMemoryUsed(): number {
  return resident;
}

/** Counts `bytes` more (or, negative, fewer) shard bytes held in memory. */
export function holdShardMemory(bytes: number): void {
  resident += bytes;
}

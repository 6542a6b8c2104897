// Shared pieces of the fuzz suite (issue 14): how many cases to run, and what a good failure looks like.
//
// Default runs are small so `npm test` stays quick; `npm run fuzz:long` (TICKETLAB_FUZZ_RUNS=N) runs N
// cases per cheap property and N/20 per property that trains a model.
import { expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { budget } from '../budget.js';

const LONG = Number(process.env.TICKETLAB_FUZZ_RUNS);

/** Cases for a property: `short` by default, TICKETLAB_FUZZ_RUNS (divided by `costly`) in long mode. */
export function fuzzRuns(short: number, costly = 1): number {
  return Number.isInteger(LONG) && LONG > 0 ? Math.max(short, Math.floor(LONG / costly)) : short;
}

/** Test timeout: vitest's default (a scaled budget), an hour (scaled too) in long mode (thousands of cases). */
export const fuzzTimeout: number | undefined = Number.isInteger(LONG) && LONG > 0 ? budget(3_600_000) : undefined;

/** Seed for fast-check, so a failure printed by CI can be replayed (TICKETLAB_FUZZ_SEED). */
export const fuzzSeed = process.env.TICKETLAB_FUZZ_SEED ? Number(process.env.TICKETLAB_FUZZ_SEED) : undefined;

// What a leaked programming error looks like, as opposed to a message written for the user.
// (A JSON parser's own words are fine after the file they are about, not as the whole message.)
const LEAKS = [/Cannot read propert/, /is not a function/, /is not iterable/, /Invalid typed array length/, /^Unexpected (end|token|non-whitespace)/, /Maximum call stack/, /^\[object /];

/**
 * Asserts `e` is a user-facing error: an Error with a non-empty message on one line, no stack frames,
 * none of the messages JavaScript itself produces for programming errors.
 */
export function expectOneLineError(e: unknown, context = ''): void {
  expect(e, context).toBeInstanceOf(Error);
  const msg = (e as Error).message;
  expect(msg.length, `${context}: empty message`).toBeGreaterThan(0);
  expect(msg, context).not.toContain('\n');
  expect(msg, context).not.toMatch(/^\s+at /m);
  for (const re of LEAKS) expect(msg, `${context}: leaked ${re}`).not.toMatch(re);
  expect((e as Error).name, `${context}: ${msg}`).not.toMatch(/^(TypeError|ReferenceError|SyntaxError)$/);
}

/**
 * Runs `p` or fails after `ms` (a budget for a loaded 2-core machine, scaled by tests/budget.ts): a
 * property must never hang, and a busy machine is not a hang.
 */
export async function withinMs<T>(base: number, what: string, p: Promise<T>): Promise<T> {
  const ms = budget(base);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: ${what} took more than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Every file under `dir` with a hash of its bytes (symlinks by target), to check that a failed command changed nothing. */
export function snapshot(dir: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p);
      if (skip(rel)) continue;
      if (e.isSymbolicLink()) out.set(rel, `-> ${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) {
        out.set(rel + '/', 'dir');
        walk(p);
      } else if (!e.isFile()) out.set(rel, 'special'); // a FIFO or device: reading it would block or never end
      else out.set(rel, createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

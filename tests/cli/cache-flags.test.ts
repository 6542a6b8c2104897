// --cache / --no-cache / --cache-mem: the shard memory budget reaches the data layer, and a bad spelling
// or a contradiction is one line naming the flag.
import { afterEach, describe, expect, it } from 'vitest';
import { applyCacheFlags } from '../../src/cli/flags.js';
import { setShardMemoryBudget, shardMemoryBudget } from '../../src/data/shard-memory.js';

describe('cache flags', () => {
  afterEach(() => setShardMemoryBudget(null));

  it('--cache-mem sets the budget of shards held in memory', () => {
    applyCacheFlags({ 'cache-mem': '64M' });
    expect(shardMemoryBudget()).toBe(64 * 2 ** 20);
    applyCacheFlags({ 'cache-mem': '0' });
    expect(shardMemoryBudget()).toBe(0);
  });

  it('a bad --cache-mem, or one beside --no-cache, is a one-line error naming the flag', () => {
    expect(() => applyCacheFlags({ 'cache-mem': 'lots' })).toThrow(/^--cache-mem=lots: expected bytes/);
    expect(() => applyCacheFlags({ 'cache-mem': '1G', 'no-cache': true })).toThrow(/^--cache-mem sizes .* --no-cache/);
    expect(() => applyCacheFlags({ cache: '/tmp/x', 'no-cache': true })).toThrow(/^--cache and --no-cache contradict/);
  });
});

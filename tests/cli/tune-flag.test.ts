// --tune / --no-tune / TICKETLAB_TUNE: which kernels a training command uses.
import { afterEach, describe, expect, it } from 'vitest';
import { wantsTune } from '../../src/cli/flags.js';

const saved = process.env.TICKETLAB_TUNE;
afterEach(() => {
  if (saved === undefined) delete process.env.TICKETLAB_TUNE;
  else process.env.TICKETLAB_TUNE = saved;
});

describe('wantsTune', () => {
  it('static rules by default, tuned kernels with --tune or TICKETLAB_TUNE=1', () => {
    delete process.env.TICKETLAB_TUNE;
    expect(wantsTune({})).toBe(false);
    expect(wantsTune({ tune: true })).toBe(true);
    process.env.TICKETLAB_TUNE = '1';
    expect(wantsTune({})).toBe(true);
  });
  it('--no-tune wins over the environment, and contradicts --tune', () => {
    process.env.TICKETLAB_TUNE = '1';
    expect(wantsTune({ 'no-tune': true })).toBe(false);
    expect(() => wantsTune({ tune: true, 'no-tune': true })).toThrow(/contradict/);
  });
});

// Library errors name the function and argument; the CLI names the flag that fed that argument.
import { describe, expect, it } from 'vitest';
import { createModel, type ModelName } from '../../src/nn/models/index.js';
import { parseSchedule } from '../../src/nn/optim/schedule.js';
import { checkRewind, parseRewind } from '../../src/prune/imp.js';
import { parseGranularity, GRANULARITIES } from '../../src/prune/types.js';
import { optimizerConfig, DEFAULT_TRAIN } from '../../src/train/types.js';
import { cliMessage } from '../../src/cli/errors.js';
import { ArgumentError } from '../../src/util/errors.js';

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('did not throw');
}

describe('library errors and their CLI wording', () => {
  const cases: [string, () => unknown, RegExp, RegExp][] = [
    ['createModel', () => createModel('meso5' as ModelName, { size: 64 }), /^createModel: name 'meso5' is not one of 'meso4', /, /^--model 'meso5' is not one of /],
    ['parseSchedule', () => parseSchedule('step:x', 10), /^parseSchedule: spec 'step:x': use step:<steps>:<gamma>/, /^--schedule 'step:x': use /],
    ['parseRewind', () => parseRewind('later'), /^parseRewind: spec 'later' is not one of init/, /^--rewind 'later' is not one of init/],
    ['checkRewind', () => checkRewind({ rewind: 'epoch:9', train: { ...DEFAULT_TRAIN, epochs: 2 } }), /^runImp: config.rewind epoch:9: the dense level trains only 2 epoch/, /^--rewind epoch:9: the dense level/],
    ['optimizerConfig', () => optimizerConfig({ ...DEFAULT_TRAIN, lr: -1 }), /^fit: settings.lr -1 must be positive$/, /^--lr -1 must be positive$/],
    ['parseGranularity', () => parseGranularity('block:5'), /^parseGranularity: spec 'block:5' is not one of 'weight', 'block:4', 'block:8', 'block:16', 'channel' or 'filter'$/, /^--granularity 'block:5'/],
  ];
  it.each(cases)('%s: names the function and argument; the CLI names the flag', (_name, f, lib, cli) => {
    const e = thrown(f);
    expect(e).toBeInstanceOf(ArgumentError);
    expect((e as Error).message).toMatch(lib);
    expect((e as Error).message).not.toMatch(/--/);
    expect(cliMessage(e)).toMatch(cli);
  });

  it('keeps the first line of other errors and of arguments no flag feeds', () => {
    expect(cliMessage(new Error('one\ntwo'))).toBe('one');
    expect(cliMessage(new ArgumentError('prune', 'options.amount', '1.5 must be in [0, 1)'))).toBe('prune: options.amount 1.5 must be in [0, 1)');
  });

  it('granularities accept exactly the union', () => {
    for (const g of GRANULARITIES) expect(parseGranularity(g)).toBe(g);
    for (const g of ['block:2', 'weights', 'Filter', '']) expect(() => parseGranularity(g)).toThrow(ArgumentError);
  });
});

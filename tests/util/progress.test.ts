import { describe, expect, it } from 'vitest';
import { formatDuration, formatProgressLine, formatRate, Progress, type ProgressStream } from '../../src/util/progress.js';

describe('formatDuration', () => {
  it.each([
    [0, '0.0s'],
    [4.23, '4.2s'],
    [9.96, '10s'],
    [42.4, '42s'],
    [59.6, '1m00s'],
    [185, '3m05s'],
    [3599.6, '1h00m'],
    [3720, '1h02m'],
    [86_399, '1d00h'],
    [2 * 86_400 + 3 * 3600, '2d03h'],
    [NaN, '?'],
    [Infinity, '?'],
    [-1, '?'],
  ])('%s s -> %s', (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });
});

describe('formatRate', () => {
  it.each([
    [3959.4, 'img', '3.96k img/s'],
    [999.4, 'img', '999 img/s'],
    [999.7, 'img', '1.00k img/s'],
    [12.345, 'img', '12.3 img/s'],
    [2.5e6, 'img', '2.50M img/s'],
    [0.25, 'batch', '4.00 s/batch'],
    [0, 'img', '0 img/s'],
    [NaN, 'img', '? img/s'],
  ])('%s %s/s -> %s', (r, unit, text) => {
    expect(formatRate(r, unit)).toBe(text);
  });
});

describe('formatProgressLine', () => {
  it('with a total: bar, percent, count, rate, elapsed, eta', () => {
    expect(formatProgressLine({ label: 'train', unit: 'img', value: 640, total: 1280, elapsedS: 0.16, rate: 4000, done: false }, 10)).toBe(
      'train [█████░░░░░]  50% 640/1280 img · 4.00k img/s · 0.2s elapsed · eta 0.2s',
    );
  });
  it('without a total, and when done (no eta)', () => {
    expect(formatProgressLine({ unit: 'batch', value: 7, elapsedS: 70, rate: 0.1, done: false })).toBe('7 batch · 10.0 s/batch · 1m10s elapsed');
    expect(formatProgressLine({ unit: 'img', value: 10, total: 10, elapsedS: 2, rate: 5, done: true }, 0)).toBe('100% 10/10 img · 5.00 img/s · 2.0s elapsed');
  });
  it('clamps an overshoot to 100% and shows an unknown eta as ?', () => {
    const line = formatProgressLine({ unit: 'it', value: 12, total: 10, elapsedS: 1, rate: 0, done: false }, 4);
    expect(line).toContain('[████] 100% 12/10');
    expect(line).toContain('eta 0.0s');
    expect(formatProgressLine({ unit: 'it', value: 0, total: 10, elapsedS: 1, rate: 0, done: false })).toContain('eta ?');
  });
});

class FakeStream implements ProgressStream {
  chunks: string[] = [];
  constructor(
    readonly isTTY: boolean,
    readonly columns = 120,
  ) {}
  write(chunk: string): boolean {
    this.chunks.push(chunk);
    return true;
  }
}

describe('Progress', () => {
  it('on a TTY redraws one line at most every 100 ms and ends with a newline', () => {
    let t = 0;
    const stream = new FakeStream(true);
    const p = new Progress({ total: 100, label: 'eval', unit: 'img', stream, now: () => t });
    for (let i = 0; i < 100; i++) {
      t += 5; // 200 ticks per second
      p.tick();
    }
    // 500 ms of ticks: the first draw plus one per 100 ms.
    expect(stream.chunks.length).toBeGreaterThanOrEqual(5);
    expect(stream.chunks.length).toBeLessThanOrEqual(6);
    expect(stream.chunks.every((c) => c.startsWith('\r') && c.includes('\x1b[K'))).toBe(true);
    expect(stream.chunks.join('')).not.toContain('\n');
    p.done();
    p.done();
    const last = stream.chunks[stream.chunks.length - 1];
    expect(last).toBe('\r' + 'eval [████████████████████] 100% 100/100 img · 200 img/s · 0.5s elapsed' + '\x1b[K\n');
    expect(stream.chunks.filter((c) => c.endsWith('\n'))).toHaveLength(1);
  });

  it('when not a TTY prints a plain line every 5 s and at the end', () => {
    let t = 0;
    const stream = new FakeStream(false);
    const p = new Progress({ total: 1000, unit: 'img', stream, now: () => t });
    for (let i = 0; i < 1000; i++) {
      t += 20; // 20 s in all
      p.tick();
    }
    p.done();
    expect(stream.chunks.length).toBe(5); // at 5, 10, 15, 20 s, then the final line
    expect(stream.chunks.every((c) => c.endsWith('\n') && !c.includes('\r') && !c.includes('\x1b'))).toBe(true);
    expect(stream.chunks[0]).toBe(' 25% 250/1000 img · 50.0 img/s · 5.0s elapsed · eta 15s\n');
    expect(stream.chunks[4]).toBe('100% 1000/1000 img · 50.0 img/s · 20s elapsed\n');
  });

  it('a short job off-TTY prints only its final line', () => {
    let t = 0;
    const stream = new FakeStream(false);
    const p = new Progress({ unit: 'batch', stream, now: () => t });
    t = 1000;
    p.tick(3);
    p.done();
    expect(stream.chunks).toEqual(['3 batch · 3.00 batch/s · 1.0s elapsed\n']);
  });

  it('rate follows the recent window, so a slow start does not skew the eta', () => {
    let t = 0;
    const stream = new FakeStream(false);
    const p = new Progress({ total: 10_000, unit: 'img', stream, now: () => t, logIntervalMs: 1000 });
    t = 30_000; // 30 s of warm-up for the first image
    p.tick();
    for (let i = 0; i < 200; i++) {
      t += 100; // then 10 img/s ... 
      p.tick(10); // ... times 10: 100 img/s
    }
    const last = stream.chunks[stream.chunks.length - 1];
    expect(last).toContain('100 img/s');
  });

  it('fits narrow terminals by dropping the bar, then truncating', () => {
    let t = 0;
    const narrow = new FakeStream(true, 50);
    const p = new Progress({ total: 10, label: 'prepare', unit: 'img', stream: narrow, now: () => t });
    t = 1000;
    p.tick();
    const line = narrow.chunks[0].replace('\r', '').replace('\x1b[K', '');
    expect(line.length).toBeLessThanOrEqual(49);
    expect(line).not.toContain('█');
  });
});

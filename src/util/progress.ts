// A progress line for long loops (epochs, evaluation, data preparation). It writes to stderr so stdout
// stays clean for results, redraws one line on a terminal, and falls back to occasional plain lines when
// output goes to a log file or CI, where carriage-return redraws would become thousands of lines.

/** What Progress needs from a stream; process.stderr satisfies it. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Expected count; omit (or 0) when unknown, and the bar and ETA are left out. */
  total?: number;
  label?: string;
  /** Unit name for counts and rates ("img", "batch"). */
  unit?: string;
  stream?: ProgressStream;
  /** Overrides stream.isTTY (e.g. to force log-style output). */
  tty?: boolean;
  /** Milliseconds clock, injectable for tests. */
  now?: () => number;
  /** Minimum time between redraws on a TTY (default 100 ms: ~10 per second). */
  ttyIntervalMs?: number;
  /** Minimum time between lines when not a TTY (default 5 s). */
  logIntervalMs?: number;
}

/**
 * Human duration: "4.2s", "42s", "3m05s", "1h02m", "2d03h"; "?" for unknown (NaN, infinite, negative).
 * Fixed-width-ish fields keep a redrawn line from jittering.
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  if (seconds < 9.95) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const two = (v: number): string => String(v).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  const m = Math.round(seconds / 60);
  if (m < 24 * 60) return `${Math.floor(m / 60)}h${two(m % 60)}m`;
  const h = Math.round(seconds / 3600);
  return `${Math.floor(h / 24)}d${two(h % 24)}h`;
}

/**
 * Throughput with 3 significant digits and k/M prefixes: "3.96k img/s". Below one unit per second it
 * flips to seconds per unit ("4.00 s/img"), which reads better for slow steps.
 */
export function formatRate(perSecond: number, unit = 'it'): string {
  if (!Number.isFinite(perSecond) || perSecond < 0) return `? ${unit}/s`;
  if (perSecond === 0) return `0 ${unit}/s`;
  if (perSecond < 1) return `${(1 / perSecond).toPrecision(3)} s/${unit}`;
  for (const [div, suffix] of [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const) {
    if (perSecond >= div * 0.9995) return `${(perSecond / div).toPrecision(3)}${suffix} ${unit}/s`;
  }
  return `${perSecond.toPrecision(3)} ${unit}/s`;
}

export interface ProgressState {
  label?: string;
  unit: string;
  value: number;
  total?: number;
  elapsedS: number;
  /** Current rate in units per second (recent window while running, overall average at the end). */
  rate: number;
  done: boolean;
}

/**
 * The progress line itself, pure for tests:
 * `train [████████░░░░░░░░]  50% 640/1280 img · 3.96k img/s · 0.2s elapsed · eta 0.2s`.
 * `barWidth` 0 leaves the bar out.
 */
export function formatProgressLine(state: ProgressState, barWidth = 20): string {
  const parts: string[] = [];
  const hasTotal = state.total !== undefined && state.total > 0;
  const label = state.label ? `${state.label} ` : '';
  if (hasTotal) {
    const frac = Math.min(1, Math.max(0, state.value / (state.total as number)));
    const pct = `${Math.floor(frac * 100)}%`.padStart(4);
    if (barWidth > 0) {
      const filled = Math.round(frac * barWidth);
      parts.push(`${label}[${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}] ${pct} ${state.value}/${state.total} ${state.unit}`);
    } else {
      parts.push(`${label}${pct} ${state.value}/${state.total} ${state.unit}`);
    }
  } else {
    parts.push(`${label}${state.value} ${state.unit}`);
  }
  parts.push(formatRate(state.rate, state.unit));
  parts.push(`${formatDuration(state.elapsedS)} elapsed`);
  if (hasTotal && !state.done) {
    const remaining = Math.max(0, (state.total as number) - state.value);
    parts.push(`eta ${remaining === 0 ? formatDuration(0) : state.rate > 0 ? formatDuration(remaining / state.rate) : '?'}`);
  }
  return parts.join(' · ');
}

// The displayed rate and ETA follow the last few seconds, not the whole run: the first batches include
// shader compilation and warm-up, which would otherwise skew the ETA for a long time.
const RATE_WINDOW_MS = 10_000;

export class Progress {
  readonly total: number | undefined;
  readonly label: string | undefined;
  readonly unit: string;
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly ttyIntervalMs: number;
  private readonly logIntervalMs: number;
  private readonly start: number;
  private count = 0;
  private lastDraw: number;
  private finished = false;
  private drewTty = false;
  private samples: [number, number][] = [];

  constructor(options: ProgressOptions = {}) {
    this.total = options.total !== undefined && options.total > 0 ? options.total : undefined;
    this.label = options.label;
    this.unit = options.unit ?? 'it';
    this.stream = options.stream ?? process.stderr;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.now = options.now ?? (() => performance.now());
    this.ttyIntervalMs = options.ttyIntervalMs ?? 100;
    this.logIntervalMs = options.logIntervalMs ?? 5000;
    this.start = this.now();
    // On a TTY the first tick draws at once; in logs the first line waits a full interval, so short
    // loops print only their final line.
    this.lastDraw = this.tty ? -Infinity : this.start;
    this.samples.push([this.start, 0]);
  }

  get value(): number {
    return this.count;
  }

  /** Adds `n` units done (default 1) and redraws if the throttle allows. */
  tick(n = 1): void {
    this.update(this.count + n);
  }

  /** Sets the absolute count (for loops that know where they are). */
  update(value: number): void {
    if (this.finished) return;
    this.count = value;
    const t = this.now();
    this.samples.push([t, value]);
    while (this.samples.length > 2 && t - this.samples[1][0] > RATE_WINDOW_MS) this.samples.shift();
    if (t - this.lastDraw >= (this.tty ? this.ttyIntervalMs : this.logIntervalMs)) {
      this.lastDraw = t;
      this.draw(t, false);
    }
  }

  /** Prints the final line (total count, elapsed, average rate). Safe to call more than once. */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    this.draw(this.now(), true);
  }

  private state(t: number, done: boolean): ProgressState {
    const elapsedS = (t - this.start) / 1000;
    let rate: number;
    if (done) {
      rate = elapsedS > 0 ? this.count / elapsedS : 0;
    } else {
      const [t0, v0] = this.samples[0];
      rate = t > t0 ? ((this.count - v0) * 1000) / (t - t0) : 0;
    }
    return { label: this.label, unit: this.unit, value: this.count, total: this.total, elapsedS, rate, done };
  }

  private draw(t: number, done: boolean): void {
    const state = this.state(t, done);
    if (!this.tty) {
      this.stream.write(formatProgressLine(state, 0) + '\n');
      return;
    }
    const columns = this.stream.columns ?? 100;
    let line = formatProgressLine(state, 20);
    // A line longer than the terminal wraps, and '\r' then only rewinds the last row.
    if (line.length > columns - 1) line = formatProgressLine(state, 0);
    if (line.length > columns - 1) line = line.slice(0, Math.max(0, columns - 2)) + '…';
    this.stream.write(`\r${line}\x1b[K${done ? '\n' : ''}`);
    this.drewTty = !done;
  }

  /** True while a TTY line is on screen without its newline (callers printing other output can done() first). */
  get lineOpen(): boolean {
    return this.drewTty;
  }
}

// Learning-rate schedules as pure functions of the step: resuming a run recomputes the rate exactly.
import { ArgumentError } from '../../util/errors.js';

/** How a schedule is written in settings: `constant`, `cosine` or `step:<steps>:<gamma>`. */
export type ScheduleSpec = 'constant' | 'cosine' | `step:${number}:${number}`;
export type Schedule =
  | { kind: 'constant' }
  | { kind: 'step'; stepSize: number; gamma: number }
  | { kind: 'cosine'; totalSteps: number; minLr?: number };

export interface ScheduleConfig {
  schedule: Schedule;
  /** Linear warm-up from 0 over this many steps (0 = none). */
  warmupSteps?: number;
}

/** The learning rate at `step` (0-based) for a base rate `lr`. */
export function lrAt(lr: number, step: number, c: ScheduleConfig): number {
  const warm = c.warmupSteps ?? 0;
  const s = c.schedule;
  let v = lr;
  if (s.kind === 'step') v = lr * s.gamma ** Math.floor(step / s.stepSize);
  else if (s.kind === 'cosine') {
    const min = s.minLr ?? 0;
    const t = Math.min(1, step / Math.max(1, s.totalSteps));
    v = min + (lr - min) * 0.5 * (1 + Math.cos(Math.PI * t));
  }
  if (warm > 0 && step < warm) v *= (step + 1) / warm;
  return v;
}

/** Parses `constant`, `step:<size>:<gamma>`, `cosine` (total steps filled in by the caller). */
export function parseSchedule(spec: ScheduleSpec | 'none' | (string & {}), totalSteps: number): Schedule {
  const [kind, a, b] = spec.split(':');
  if (kind === 'constant' || kind === 'none') return { kind: 'constant' };
  if (kind === 'cosine') return { kind: 'cosine', totalSteps };
  if (kind === 'step') {
    const stepSize = Number(a ?? NaN);
    const gamma = Number(b ?? 0.1);
    if (!(stepSize > 0) || !(gamma > 0)) throw new ArgumentError('parseSchedule', 'spec', `'${spec}': use step:<steps>:<gamma>, e.g. step:1000:0.1`);
    return { kind: 'step', stepSize, gamma };
  }
  throw new ArgumentError('parseSchedule', 'spec', `'${spec}' is not one of constant, cosine, step:<steps>:<gamma>`);
}

// The kernel planner: the one place where the choice of kernel for an op lives.
//
// Every op with more than one kernel asks `plan(family, geometry, query)` and gets back a Plan: the
// candidate's variant, tile label and tile parameters. Launchers turn a Plan into pipelines and grids
// (the grid follows from the tile parameters and the geometry, so it is computed next to the WGSL).
//
// A FAMILY is an op with interchangeable kernels ('conv.fwd', 'conv.dgrad', 'conv.wgrad', 'matmul',
// 'reduce', 'norm', 'map', ...; the pruned layers' 'pruned.fwd' / 'pruned.dgrad' / 'pruned.wgrad',
// whose candidates are the dense kernel and the sparse ones, live in sparse-plan.ts). Candidates are
// declared next to their launcher (src/tensor/ops/*.ts), with the shapes, dtypes, weight formats and
// device features they suit. A launcher decides nothing about the device itself: every choice between
// kernels, tiles, thread caps or split targets is a family's, so the override, pins and the tuner
// reach it. How a plan is resolved, first match wins:
//   1. the override (setKernelOverride(), else env TICKETLAB_KERNELS), e.g.
//        TICKETLAB_KERNELS=conv:direct,matmul:shared:128x128,reduce:thread,map:capped:64
//      `conv` selects every family whose name starts with `conv.`; `conv.wgrad:tiled` just one. An entry
//      with a variant only lets the family's default rule pick that variant's tile. An entry naming
//      the family exactly beats a prefix entry; otherwise later entries win.
//   2. pins: the kernels a run recorded (pinKernels), so `--resume` is bit-identical;
//   3. the tuned choice for this adapter (setTunedChoices, filled from the tuning cache when tuning
//      is on: src/tensor/tune.ts);
//   4. the family's static default rule (e.g. direct conv on software adapters, tiled on GPUs;
//      register matmul / shared; thread reduce / group; thread norm / group; map group cap).
// Every resolution is remembered (plannerRecord()) with one example geometry per shape class
// (plannerSeen()), which is what runs record and what the tuner times.
//
// Registering a family and its candidates (in the launcher module, at import time):
//
//   interface MyGeom { m: number; n: number }
//   registerFamily<MyGeom>({
//     family: 'myop',
//     about: 'my op: C = f(A)',
//     shapeClass: (g) => `${g.m}x${g.n}`,            // what tuning results are keyed by
//     defaultRule: (g, dev, cands) => cands.find((c) => c.variant === (dev.isSoftware ? 'flat' : 'tiled')) ?? cands[0],
//     bench: (g, p) => myBenchCase(g, p),              // optional: lets the tuner time candidates
//   });
//   registerCandidates<MyGeom>('myop', [
//     { variant: 'flat' },
//     { variant: 'tiled', tile: '64x64', params: { bm: 64, bn: 64 } },
//     { variant: 'tiled', tile: '128x128', params: { bm: 128, bn: 128 }, tags: ['big-gpu'],
//       suits: (g) => g.m * g.n >= 1 << 20 },
//     { variant: 'sparse', formats: ['sparse'] },       // only for queries with format 'sparse'
//   ]);
//
// Asking for a plan (in the launcher, every call; resolution is a map lookup after the first):
//
//   const p = plan<MyGeom>('myop', { m, n });                     // dense f32 by default
//   const p2 = plan<MyGeom>('myop', { m, n }, { format: 'sparse', density: 0.2 });
//   const k = cachedKernel(`myop|${p.id}`, () => myKernel(p.params));
//   queue.dispatch(k, bufs, params, grid, { op: 'myop', variant: p.id, shape: '...', flops });
//
// registerCandidates may be called again for the same family (e.g. from another module): candidates
// are appended; a candidate with an id already present replaces it. Ids are `variant` or
// `variant:tile` and are what the override, pins, tuning cache and profiles name.
import { device, deviceIsOpen, type DeviceInfo } from './device.js';
import type { Kernel } from '../shaders/kernel.js';

/** Device facts a default rule or a candidate's `suits` may look at. */
export interface DeviceTraits {
  isSoftware: boolean;
  subgroups: boolean;
  timestamps: boolean;
  /** maxComputeWorkgroupStorageSize. */
  sharedBytes: number;
  /** maxComputeInvocationsPerWorkgroup. */
  invocations: number;
}

export type TileParams = Readonly<Record<string, number | string | boolean>>;

export interface Candidate<G = unknown> {
  variant: string;
  /** Tile label (e.g. '128x128'); part of the id. */
  tile?: string;
  /** What the launcher needs to build the kernel and grid (tile sizes, vec widths, caps...). */
  params?: TileParams;
  /** Weight formats served (default ['dense']). */
  formats?: readonly string[];
  /** Element types served (default ['f32']). */
  dtypes?: readonly string[];
  /** Shapes and devices it is valid for (default: all). Unsuited candidates are never chosen. */
  suits?: (g: G, dev: DeviceTraits) => boolean;
  /** Free labels, e.g. 'big-gpu' for configurations meant for large GPUs, 'subgroups'. */
  tags?: readonly string[];
}

/** A registered candidate with its id. */
export interface RegisteredCandidate<G = unknown> extends Candidate<G> {
  readonly id: string;
}

/** Timing hook for the tuner: build inputs once, then run() records one launch of the plan. */
export interface BenchCase {
  run(): void;
  dispose(): void;
}

export interface FamilySpec<G> {
  family: string;
  /** One line for docs and `ticketlab tune --help`. */
  about: string;
  /** The tuning key of a geometry: geometries of one class share the best candidate. */
  shapeClass: (g: G) => string;
  /** The static choice among the suitable candidates (never empty). */
  defaultRule: (g: G, dev: DeviceTraits, candidates: readonly RegisteredCandidate<G>[]) => RegisteredCandidate<G>;
  /** Optional: lets the tuner time a candidate on this geometry. */
  bench?: (g: G, p: Plan) => BenchCase;
  /** Human-readable shape for profiles (default: the shape class). */
  describe?: (g: G) => string;
  /**
   * Optional: the variant that reproduces what the code computed before this family existed, for a
   * family whose candidates differ in rounding. A resumed run whose recorded kernels name other
   * families but none of this one was made by that code, so it gets this variant (as a pin) and
   * stays bit-identical.
   */
  legacy?: string;
}

export interface PlanQuery {
  /** Element type (default 'f32'). */
  dtype?: string;
  /** Weight format (default 'dense'; 'sparse' for a pruned layer with a compressed layout). */
  format?: string;
  /** Weight density in [0, 1] when known (sparse kernels may suit only low densities). */
  density?: number;
}

export type PlanSource = 'override' | 'pinned' | 'tuned' | 'default';

export interface Plan {
  family: string;
  /** `variant` or `variant:tile`. */
  id: string;
  variant: string;
  tile?: string;
  params: TileParams;
  source: PlanSource;
  /** The key under which the choice is recorded, tuned and pinned. */
  key: string;
}

interface Family {
  spec: FamilySpec<unknown> | null;
  candidates: RegisteredCandidate<unknown>[];
}

const families = new Map<string, Family>();

function familyEntry(name: string): Family {
  let f = families.get(name);
  if (!f) families.set(name, (f = { spec: null, candidates: [] }));
  return f;
}

export function candidateId(c: Candidate<never>): string {
  return c.tile ? `${c.variant}:${c.tile}` : c.variant;
}

/** Declares a family (its shape classes, default rule and bench hook). Re-registering replaces it. */
export function registerFamily<G>(spec: FamilySpec<G>): void {
  familyEntry(spec.family).spec = spec as unknown as FamilySpec<unknown>;
  resolved.clear();
}

/** Adds candidates to a family (declared before or after it). Same id: the new one replaces the old. */
export function registerCandidates<G>(family: string, cands: readonly Candidate<G>[]): void {
  const f = familyEntry(family);
  for (const c of cands) {
    const rc = { ...c, id: candidateId(c as Candidate<never>) } as RegisteredCandidate<unknown>;
    const i = f.candidates.findIndex((x) => x.id === rc.id);
    if (i >= 0) f.candidates[i] = rc;
    else f.candidates.push(rc);
  }
  resolved.clear();
}

/** Registered family names, sorted. */
export function planFamilies(): string[] {
  return [...families.keys()].sort();
}

export function familySpec(family: string): FamilySpec<unknown> | null {
  return families.get(family)?.spec ?? null;
}

export function candidatesOf(family: string): readonly RegisteredCandidate<unknown>[] {
  return families.get(family)?.candidates ?? [];
}

// ---------------------------------------------------------------------------------------------
// Device traits

let traitsOverride: DeviceTraits | null = null;

export function traitsOf(info: DeviceInfo, limits: Readonly<Record<string, number>>): DeviceTraits {
  return {
    isSoftware: info.isSoftware,
    subgroups: info.features.includes('subgroups'),
    timestamps: info.features.includes('timestamp-query'),
    sharedBytes: limits.maxComputeWorkgroupStorageSize ?? 16384,
    invocations: limits.maxComputeInvocationsPerWorkgroup ?? 256,
  };
}

/** The open device's traits (tests may substitute others with setDeviceTraits). */
export function deviceTraits(): DeviceTraits {
  if (traitsOverride) return traitsOverride;
  const d = device();
  return traitsOf(d.info, d.limits);
}

/** For tests: plan as if on a device with these traits (null: the real one). */
export function setDeviceTraits(t: DeviceTraits | null): void {
  traitsOverride = t;
  resolved.clear();
}

// ---------------------------------------------------------------------------------------------
// Override: TICKETLAB_KERNELS or setKernelOverride

export interface OverrideEntry {
  /** A family name or a prefix before '.' ('conv' = conv.fwd, conv.dgrad, conv.wgrad). */
  selector: string;
  variant: string;
  tile?: string;
}

/** Parses `conv:direct,matmul:shared:128x128` (one-line error naming the bad entry). */
export function parseKernelOverride(spec: string, what = 'TICKETLAB_KERNELS'): OverrideEntry[] {
  const out: OverrideEntry[] = [];
  for (const raw of spec.split(',')) {
    const e = raw.trim();
    if (!e) continue;
    const parts = e.split(':');
    if (parts.length < 2 || parts.length > 3 || parts.some((p) => !p)) {
      throw new Error(`${what}: '${e}' should be family:variant or family:variant:tile (e.g. conv:direct, matmul:shared:128x128)`);
    }
    out.push({ selector: parts[0], variant: parts[1], tile: parts[2] });
  }
  return out;
}

let overrideSet: OverrideEntry[] | null = null;
let envCache: { text: string; entries: OverrideEntry[] } | null = null;

/**
 * Forces kernels for tests and benches: a TICKETLAB_KERNELS-style string, or null to go back to the
 * environment variable (and the planner's own choice when that is unset).
 */
export function setKernelOverride(spec: string | null): void {
  overrideSet = spec === null ? null : parseKernelOverride(spec, 'kernel override');
  resolved.clear();
}

/** The active override as a string ('' when none). */
export function kernelOverride(): string {
  const es = overrideEntries();
  return es.map((e) => `${e.selector}:${e.variant}${e.tile ? `:${e.tile}` : ''}`).join(',');
}

function overrideEntries(): OverrideEntry[] {
  if (overrideSet) return overrideSet;
  const text = process.env.TICKETLAB_KERNELS ?? '';
  if (envCache?.text !== text) {
    envCache = { text, entries: parseKernelOverride(text) };
    resolved.clear();
  }
  return envCache.entries;
}

function selects(sel: string, family: string): boolean {
  return sel === family || family.startsWith(`${sel}.`);
}

/** Runs fn with an override in force, restoring the previous one after (also on throw). */
export function withKernels<T>(spec: string, fn: () => T): T {
  const saved = overrideSet;
  setKernelOverride(spec);
  try {
    return fn();
  } finally {
    overrideSet = saved;
    resolved.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Pins and tuned choices: key -> candidate id

/** `${family}|${dtype}|${format}|${shapeClass}`. */
export type PlanKey = string;


/** ceil(log2(v)) for v >= 1 (0 below): the power-of-two size buckets families use as shape classes. */
export function log2Class(v: number): number {
  return Math.ceil(Math.log2(Math.max(1, v)));
}
export function planKey(family: string, shapeClass: string, q: PlanQuery = {}): PlanKey {
  return `${family}|${q.dtype ?? 'f32'}|${q.format ?? 'dense'}|${shapeClass}`;
}

export function familyOfKey(key: PlanKey): string {
  return key.slice(0, key.indexOf('|'));
}

const pins = new Map<PlanKey, string>();
const tuned = new Map<PlanKey, string>();

/** Makes these choices binding (a resumed run's recorded kernels). Unknown ids are ignored with the default. */
export function pinKernels(choices: Readonly<Record<PlanKey, string>>): void {
  for (const [k, v] of Object.entries(choices)) pins.set(k, v);
  resolved.clear();
}

export function clearPins(): void {
  pins.clear();
  resolved.clear();
}

/** Installs tuned choices (from the tuning cache or a fresh tune). */
export function setTunedChoices(choices: Readonly<Record<PlanKey, string>>, replace = false): void {
  if (replace) tuned.clear();
  for (const [k, v] of Object.entries(choices)) tuned.set(k, v);
  resolved.clear();
}

export function tunedChoices(): Record<PlanKey, string> {
  return Object.fromEntries(tuned);
}

// ---------------------------------------------------------------------------------------------
// Resolution

export interface SeenQuery {
  family: string;
  geometry: unknown;
  query: PlanQuery;
  shapeClass: string;
}

/** key -> id of every plan handed out since the last resetPlannerRecord(). */
const record = new Map<PlanKey, string>();
/** key -> one geometry met (for the tuner). */
const seen = new Map<PlanKey, SeenQuery>();
/** (key + override state) -> plan: resolution is a lookup after the first time. */
const resolved = new Map<string, Plan>();

function suitable<G>(f: Family, g: G, q: PlanQuery, dev: DeviceTraits): RegisteredCandidate<G>[] {
  const fmt = q.format ?? 'dense';
  const dt = q.dtype ?? 'f32';
  return (f.candidates as RegisteredCandidate<G>[]).filter(
    (c) => (c.formats ?? ['dense']).includes(fmt) && (c.dtypes ?? ['f32']).includes(dt) && (!c.suits || c.suits(g, dev)),
  );
}

function toPlan(family: string, c: RegisteredCandidate<unknown>, source: PlanSource, key: PlanKey): Plan {
  return { family, id: c.id, variant: c.variant, tile: c.tile, params: c.params ?? {}, source, key };
}

/** The kernel to use for `family` on geometry `g`. Throws (one line) when nothing suits. */
export function plan<G>(family: string, g: G, q: PlanQuery = {}): Plan {
  const f = families.get(family);
  if (!f?.spec) throw new Error(`planner: no kernel family '${family}' is registered`);
  const spec = f.spec as unknown as FamilySpec<G>;
  const ovs = overrideEntries(); // first: a changed TICKETLAB_KERNELS drops memoised plans
  const shapeClass = spec.shapeClass(g);
  const key = planKey(family, shapeClass, q);
  const memo = `${key}|${q.density ?? ''}`;
  const hit = resolved.get(memo);
  if (hit) {
    record.set(key, hit.id);
    return hit;
  }
  const dev = deviceTraits();
  const cands = suitable(f, g, q, dev);
  if (!cands.length) throw new Error(`planner: no ${family} kernel suits ${spec.describe?.(g) ?? shapeClass} (${q.dtype ?? 'f32'}, ${q.format ?? 'dense'})`);
  let out: Plan | null = null;
  // An entry naming the family exactly beats a prefix entry; otherwise the later entry wins.
  const ov = ovs.filter((e) => e.selector === family).pop() ?? ovs.filter((e) => selects(e.selector, family)).pop();
  if (ov) {
    const ofVariant = cands.filter((c) => c.variant === ov.variant);
    const all = f.candidates.filter((c) => c.variant === ov.variant);
    if (!all.length) {
      throw new Error(`kernel override '${ov.selector}:${ov.variant}': ${family} has no variant '${ov.variant}' (has ${[...new Set(f.candidates.map((c) => c.variant))].join(', ')})`);
    }
    if (ov.tile) {
      const c = all.find((x) => x.tile === ov.tile);
      if (!c) throw new Error(`kernel override '${ov.selector}:${ov.variant}:${ov.tile}': ${family} ${ov.variant} has tiles ${all.map((x) => x.tile ?? '(none)').join(', ')}`);
      if (!ofVariant.includes(c as RegisteredCandidate<G>)) throw new Error(`kernel override '${ov.selector}:${ov.variant}:${ov.tile}' does not suit ${family} ${spec.describe?.(g) ?? shapeClass}`);
      out = toPlan(family, c, 'override', key);
    } else if (ofVariant.length) {
      out = toPlan(family, spec.defaultRule(g, dev, ofVariant) as RegisteredCandidate<unknown>, 'override', key);
    } else {
      throw new Error(`kernel override '${ov.selector}:${ov.variant}' does not suit ${family} ${spec.describe?.(g) ?? shapeClass}`);
    }
  }
  if (!out) {
    for (const [src, m] of [['pinned', pins], ['tuned', tuned]] as const) {
      const id = m.get(key);
      const c = id ? cands.find((x) => x.id === id) : undefined;
      if (c) {
        out = toPlan(family, c as RegisteredCandidate<unknown>, src, key);
        break;
      }
    }
  }
  if (!out && spec.legacy !== undefined && pins.size && ![...pins.keys()].some((k) => familyOfKey(k) === family)) {
    const c = cands.find((x) => x.variant === spec.legacy);
    if (c) out = toPlan(family, c as RegisteredCandidate<unknown>, 'pinned', key);
  }
  out ??= toPlan(family, spec.defaultRule(g, dev, cands) as RegisteredCandidate<unknown>, 'default', key);
  resolved.set(memo, out);
  record.set(key, out.id);
  if (!seen.has(key)) seen.set(key, { family, geometry: g, query: { ...q }, shapeClass });
  return out;
}

/** Candidates that suit a geometry on this device (what the tuner times). */
export function suitableCandidates<G>(family: string, g: G, q: PlanQuery = {}): RegisteredCandidate<G>[] {
  const f = families.get(family);
  if (!f) return [];
  return suitable(f, g, q, deviceTraits());
}

/** Every choice handed out (key -> id) since the last reset: what a run records. */
export function plannerRecord(): Record<PlanKey, string> {
  return Object.fromEntries([...record].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** One geometry per key met since the last reset: what `ticketlab tune` times. */
export function plannerSeen(): SeenQuery[] {
  return [...seen.values()];
}

export function resetPlannerRecord(): void {
  record.clear();
  seen.clear();
}

// ---------------------------------------------------------------------------------------------
// One keyed kernel cache for every family (kernels are pure WGSL data, valid across devices).

const kernels = new Map<string, Kernel>();

/** The kernel stored under `key`, made on first use. Keys start with the family name. */
export function cachedKernel(key: string, make: () => Kernel): Kernel {
  let k = kernels.get(key);
  if (!k) kernels.set(key, (k = make()));
  return k;
}

// ---------------------------------------------------------------------------------------------
// Adapter identity (the tuning cache is per adapter and driver)

/** A file-name-safe key for the adapter + driver + backend, stable across processes. */
export function adapterKey(info: DeviceInfo = deviceInfoOrThrow()): string {
  const text = [info.vendor, info.architecture, info.device, info.description, info.backend].join('|');
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  const name = `${info.vendor}-${info.device || info.architecture || 'adapter'}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40);
  return `${name || 'adapter'}-${h.toString(16).padStart(8, '0')}`;
}

function deviceInfoOrThrow(): DeviceInfo {
  if (!deviceIsOpen()) throw new Error('planner: the device is not open');
  return device().info;
}

/** The plan of a named candidate (`variant` or `variant:tile`), bypassing the rules: explicit launcher options. */
export function candidatePlan(family: string, id: string): Plan {
  const c = families.get(family)?.candidates.find((x) => x.id === id);
  if (!c) throw new Error(`planner: ${family} has no kernel '${id}' (has ${candidatesOf(family).map((x) => x.id).join(', ')})`);
  return toPlan(family, c, 'override', `${family}|explicit|${id}`);
}

/** The static rule's plan (optionally among one variant's candidates), ignoring override, pins and tuning. */
export function defaultPlan<G>(family: string, g: G, variant?: string, q: PlanQuery = {}): Plan {
  const f = families.get(family);
  if (!f?.spec) throw new Error(`planner: no kernel family '${family}' is registered`);
  const spec = f.spec as unknown as FamilySpec<G>;
  const cands = suitable(f, g, q, deviceTraits()).filter((c) => !variant || c.variant === variant);
  if (!cands.length) throw new Error(`planner: no ${family} ${variant ?? ''} kernel suits ${spec.describe?.(g) ?? spec.shapeClass(g)}`);
  const c = spec.defaultRule(g, deviceTraits(), cands) as RegisteredCandidate<unknown>;
  return toPlan(family, c, 'default', planKey(family, spec.shapeClass(g), q));
}

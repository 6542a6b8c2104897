// fast-check arbitraries for pruning code: masks of a shape and density range, conv/linear geometries,
// small prunable models (named weights with values, ties included), IMP schedules. Host only: nothing
// here opens the GPU, so properties over thousands of cases stay fast.
import fc from 'fast-check';
import { HostRandom } from '../tensor/random-host.js';
import type { HostMasks } from '../prune/masks.js';
import type { Scope } from '../prune/magnitude.js';
import { GRANULARITIES, unitLayout, type Granularity } from '../prune/granularity.js';

/** A prunable weight as pruning sees it: its state-dict key and shape (size = product of the shape). */
export interface WeightSpec {
  key: string;
  shape: number[];
  size: number;
}

/** Names, shapes and values of the prunable weights of a small model. */
export interface PrunableModel {
  weights: WeightSpec[];
  values: Map<string, Float32Array>;
}

export interface DensityRange {
  /** Smallest kept fraction (default 0). */
  min?: number;
  /** Largest kept fraction (default 1). */
  max?: number;
}

const product = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/**
 * A 0/1 mask of `size` entries whose kept fraction lies in [min, max]: the kept count is drawn, then
 * that many positions, uniformly (shrinks towards fewer kept entries and a fixed pattern).
 */
export function maskArb(size: number, density: DensityRange = {}): fc.Arbitrary<Uint8Array> {
  const lo = Math.ceil((density.min ?? 0) * size);
  const hi = Math.floor((density.max ?? 1) * size);
  if (!(lo <= hi)) throw new Error(`maskArb: no kept count of ${size} entries lies in density [${density.min ?? 0}, ${density.max ?? 1}]`);
  return fc.tuple(fc.integer({ min: lo, max: hi }), fc.nat()).map(([kept, seed]) => {
    const idx = new HostRandom(seed, 0x5eed).shuffle(Array.from({ length: size }, (_, i) => i));
    const m = new Uint8Array(size);
    for (let j = 0; j < kept; j++) m[idx[j]] = 1;
    return m;
  });
}

/** Masks for every weight of `weights`, each with a kept fraction in the range. */
export function masksArb(weights: readonly WeightSpec[], density: DensityRange = {}): fc.Arbitrary<HostMasks> {
  return fc.tuple(...weights.map((w) => maskArb(w.size, density))).map((ms) => new Map(weights.map((w, i) => [w.key, ms[i]])));
}

/** A convolution's geometry: weight [outChannels, inChannels, kernel, kernel] and its input. */
export interface ConvGeometry {
  outChannels: number;
  inChannels: number;
  kernel: number;
  stride: number;
  padding: number;
  height: number;
  width: number;
}

export interface ConvGeometryLimits {
  maxChannels?: number;
  maxKernel?: number;
  maxSize?: number;
}

/** Conv geometries whose output is at least 1x1 (edge cases: 1 channel, 1x1 kernels, stride > kernel). */
export function convGeometryArb(o: ConvGeometryLimits = {}): fc.Arbitrary<ConvGeometry> {
  const maxC = o.maxChannels ?? 8;
  return fc
    .record({
      outChannels: fc.integer({ min: 1, max: maxC }),
      inChannels: fc.integer({ min: 1, max: maxC }),
      kernel: fc.integer({ min: 1, max: o.maxKernel ?? 5 }),
      stride: fc.integer({ min: 1, max: 3 }),
      padding: fc.integer({ min: 0, max: 2 }),
      height: fc.integer({ min: 1, max: o.maxSize ?? 12 }),
      width: fc.integer({ min: 1, max: o.maxSize ?? 12 }),
    })
    .filter((g) => g.height + 2 * g.padding >= g.kernel && g.width + 2 * g.padding >= g.kernel);
}

export interface LinearGeometry {
  inFeatures: number;
  outFeatures: number;
}

export function linearGeometryArb(o: { maxFeatures?: number } = {}): fc.Arbitrary<LinearGeometry> {
  const max = o.maxFeatures ?? 64;
  return fc.record({ inFeatures: fc.integer({ min: 1, max }), outFeatures: fc.integer({ min: 1, max }) });
}

export interface PrunableModelLimits {
  /** Layers (default 1..5). */
  minLayers?: number;
  maxLayers?: number;
  maxChannels?: number;
  maxKernel?: number;
  maxFeatures?: number;
  /** Weight values lie in [-range, range] (default 3). */
  range?: number;
}

/**
 * A small prunable model: conv layers (`conv<i>.weight`, [out, in, k, k]) and linear layers
 * (`fc<i>.weight`, [out, in]) with values that include deliberate ties (0, +-0.5) so that tie-breaking
 * is exercised. Only what pruning sees: names, shapes and values, no GPU module.
 */
export function prunableModelArb(o: PrunableModelLimits = {}): fc.Arbitrary<PrunableModel> {
  const range = o.range ?? 3;
  const layer = fc.oneof(
    convGeometryArb({ maxChannels: o.maxChannels ?? 6, maxKernel: o.maxKernel ?? 3 }).map((g) => [g.outChannels, g.inChannels, g.kernel, g.kernel]),
    linearGeometryArb({ maxFeatures: o.maxFeatures ?? 24 }).map((g) => [g.outFeatures, g.inFeatures]),
  );
  const value = fc.oneof(fc.float({ min: -range, max: range, noNaN: true, noDefaultInfinity: true }), fc.constantFrom(0, 0.5, -0.5));
  return fc.array(layer, { minLength: o.minLayers ?? 1, maxLength: o.maxLayers ?? 5 }).chain((shapes) => {
    const weights = shapes.map((shape, i) => ({ key: `${shape.length === 4 ? 'conv' : 'fc'}${i + 1}.weight`, shape, size: product(shape) }));
    return fc
      .tuple(...weights.map((w) => fc.array(value, { minLength: w.size, maxLength: w.size })))
      .map((vals) => ({ weights, values: new Map(weights.map((w, i) => [w.key, Float32Array.from(vals[i])])) }));
  });
}

/** An IMP schedule: `rounds` rounds pruning `rate` of the remaining weights, or explicit target sparsities. */
export type ImpSchedule = { scope: Scope; rounds: number; rate: number } | { scope: Scope; rounds: number; sparsities: number[] };

/** IMP schedules: a rate in [0.05, 0.9] for 1..maxRounds rounds, or increasing sparsities in (0, 1). */
export function impScheduleArb(o: { maxRounds?: number } = {}): fc.Arbitrary<ImpSchedule> {
  const rounds = fc.integer({ min: 1, max: o.maxRounds ?? 6 });
  const scope = fc.constantFrom<Scope>('global', 'layer');
  const byRate = fc.record({ scope, rounds, rate: fc.double({ min: 0.05, max: 0.9, noNaN: true }) });
  const bySparsity = fc
    .tuple(scope, fc.uniqueArray(fc.integer({ min: 1, max: 99 }), { minLength: 1, maxLength: o.maxRounds ?? 6 }))
    .map(([s, pct]) => {
      const sparsities = [...pct].sort((a, b) => a - b).map((p) => p / 100);
      return { scope: s, rounds: sparsities.length, sparsities };
    });
  return fc.oneof(byRate, bySparsity);
}

/** Any pruning granularity (granularity.ts), 'weight' included. */
export function granularityArb(): fc.Arbitrary<Granularity> {
  return fc.constantFrom(...GRANULARITIES);
}

/**
 * A mask of a conv [out, in, kh, kw] or linear [out, in] weight that keeps or prunes whole units of
 * `g` (blocks, filters, channels; elements for 'weight'), with a kept fraction of units in the range.
 */
export function structuredMaskArb(shape: readonly number[], g: Granularity, density: DensityRange = {}): fc.Arbitrary<Uint8Array> {
  const layout = unitLayout(shape, g);
  return maskArb(layout.units, density).map((units) => {
    const m = new Uint8Array(layout.unitOf.length);
    for (let i = 0; i < m.length; i++) m[i] = units[layout.unitOf[i]];
    return m;
  });
}

/** Structured masks for every weight of `weights` (see structuredMaskArb). */
export function structuredMasksArb(weights: readonly WeightSpec[], g: Granularity, density: DensityRange = {}): fc.Arbitrary<HostMasks> {
  return fc.tuple(...weights.map((w) => structuredMaskArb(w.shape, g, density))).map((ms) => new Map(weights.map((w, i) => [w.key, ms[i]])));
}

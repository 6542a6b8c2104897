// The per-layer profile: every dispatch of a training step is booked under its module's qualified
// name and its phase, conv/matmul rows name the planner's variant, and --json rows have exactly the
// documented fields.
import { beforeAll, describe, expect, it } from 'vitest';
import { initDevice } from '../../src/tensor/device.js';
import { plan } from '../../src/tensor/plan.js';
import { conv2dGeometry } from '../../src/tensor/ops/conv.js';
import { Module, Sequential } from '../../src/nn/module.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear } from '../../src/nn/layers.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import * as F from '../../src/autograd/functional.js';

/** A small ResNet-like net: nested modules give qualified names ('block.downsample.0'). */
class Block extends Module {
  readonly conv1 = this.addModule('conv1', new Conv2d(4, 8, 3, { padding: 1, bias: false }));
  readonly bn1 = this.addModule('bn1', new BatchNorm2d(8));
  readonly downsample = this.addModule('downsample', new Sequential(new Conv2d(4, 8, 1, { bias: false }), new BatchNorm2d(8)));
  forward(x: Tensor): Tensor {
    return F.add(F.relu(this.bn1.forward(this.conv1.forward(x))), this.downsample.forward(x));
  }
}
class Tiny extends Module {
  readonly stem = this.addModule('stem', new Conv2d(3, 4, 3, { padding: 1 }));
  readonly block = this.addModule('block', new Block());
  readonly head = this.addModule('head', new Sequential(new AdaptiveAvgPool2d(), new Flatten(), new Linear(8, 1)));
  forward(x: Tensor): Tensor {
    return this.head.forward(this.block.forward(F.relu(this.stem.forward(x))));
  }
}
import { profileTrainStep } from '../../src/train/profile.js';
import { PROFILE_JSON_FIELDS, formatProfile, profileRowJson } from '../../src/cli/profile.js';

beforeAll(async () => {
  await initDevice();
});

describe('profileTrainStep', () => {
  it('rows carry layer, phase, op, variant, shape and density for a small model', async () => {
    const m = new Tiny().initialize(0);
    const densities = new Map([['block.conv1', 0.25]]);
    const p = await profileTrainStep(m, { size: 12, batch: 2, steps: 1, densities });
    const names = new Set([...m.namedModules()].map(([n]) => n));
    const layers = new Set(p.rows.map((r) => r.layer));
    // Nested modules get qualified names, and every booked layer is a real module (or the model itself).
    expect(layers).toContain('block.conv1');
    expect(layers).toContain('block.downsample.0');
    expect(layers).toContain('head.2');
    for (const l of layers) expect(names.has(l) || l === '(model)').toBe(true);
    const conv = p.rows.filter((r) => r.layer === 'block.conv1');
    // The multi-tensor optimizer updates every parameter in one dispatch, booked to the model.
    expect(new Set(conv.map((r) => r.phase))).toEqual(new Set(['forward', 'input-grad', 'weight-grad']));
    expect(p.rows.filter((r) => r.phase === 'optimizer').map((r) => [r.layer, r.variant, r.dispatches])).toEqual([['(model)', `dense+${plan('optim', { n: m.parameterCount(), tensors: m.parameters().length }).id}`, 1]]);
    const fwd = conv.find((r) => r.op === 'conv.fwd')!;
    // The variant is what the planner chose for that geometry.
    const g = conv2dGeometry([2, 4, 12, 12], [8, 4, 3, 3], { padding: 1 });
    expect(fwd.variant).toBe(plan('conv.fwd', g).id);
    expect(fwd.shape).toContain('c4>8 12x12 k3x3');
    expect(fwd.density).toBe(0.25);
    expect(fwd.ms).toBeGreaterThan(0);
    // Nominal GFLOP/s: dense FLOPs of the pass / its time.
    expect(fwd.gflops).toBeCloseTo((2 * 2 * 12 * 12 * 8 * 4 * 9) / (fwd.ms * 1e6), 6);
    expect(conv.find((r) => r.op === 'conv.wgrad')?.phase).toBe('weight-grad');
    // The stem's input needs no gradient: no input-grad row for it.
    expect(p.rows.some((r) => r.layer === 'stem' && r.phase === 'input-grad')).toBe(false);
    expect(p.rows.find((r) => r.layer === 'head.2' && r.op === 'matmul' && r.phase === 'weight-grad')).toBeTruthy();
    expect(p.rows.find((r) => r.layer === 'block.bn1')?.density).toBeNull();
    expect(Object.keys(profileRowJson(fwd))).toEqual([...PROFILE_JSON_FIELDS]);
    const text = formatProfile(p, false);
    expect(text).toMatch(/block\.conv1\s+weight-grad/);
    expect(text).toMatch(/\d+ dispatches per step; [\d.]+ MiB moved per step/);
    // Bytes: the forward conv reads x (2x4x12x12) and the weight (8x4x3x3) and writes y (2x8x12x12), at least.
    expect(fwd.dispatches).toBeGreaterThanOrEqual(1);
    expect(fwd.bytesRead).toBeGreaterThanOrEqual(4 * (2 * 4 * 144 + 8 * 4 * 9));
    expect(fwd.bytesWritten).toBeGreaterThanOrEqual(4 * 2 * 8 * 144);
    expect(p.dispatches).toBeCloseTo(p.rows.reduce((a, r) => a + r.dispatches, 0), 9);
    // Counting alone (no timestamps) sees the same dispatches and bytes per row, with no time.
    const c = await profileTrainStep(m, { size: 12, batch: 2, steps: 2, densities, countOnly: true });
    expect(c.countOnly).toBe(true);
    expect(c.gpuMs).toBe(0);
    const key = (r: (typeof p.rows)[number]) => `${r.layer}|${r.phase}|${r.op}|${r.variant}|${r.shape}`;
    const strip = (rows: typeof p.rows) => new Map(rows.map((r) => [key(r), [r.dispatches, r.bytesRead, r.bytesWritten]]));
    expect(strip(c.rows)).toEqual(strip(p.rows));
    expect(formatProfile(c, true)).not.toMatch(/GPU time/);
    m.dispose();
  });
});

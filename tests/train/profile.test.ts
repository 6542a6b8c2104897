// The per-layer profile: every dispatch of a training step is booked under its module's qualified
// name and its phase, conv/matmul rows name the planner's variant, and --json rows have exactly the
// documented fields.
import { beforeAll, describe, expect, it } from 'vitest';
import { initDevice } from '../../src/tensor/device.js';
import { plan } from '../../src/tensor/plan.js';
import { conv2dGeometry } from '../../src/tensor/ops/conv.js';
import { createModel } from '../../src/nn/models/index.js';
import { profileTrainStep } from '../../src/train/profile.js';
import { PROFILE_JSON_FIELDS, formatProfile, profileRowJson } from '../../src/cli/profile.js';

beforeAll(async () => {
  await initDevice();
});

describe('profileTrainStep', () => {
  it('rows carry layer, phase, op, variant, shape and density for a small model', async () => {
    const m = createModel('resnet18', { size: 32, seed: 0 });
    const densities = new Map([['layer1.0.conv1', 0.25]]);
    const p = await profileTrainStep(m, { size: 32, batch: 2, steps: 1, densities });
    const names = new Set([...m.namedModules()].map(([n]) => n));
    const layers = new Set(p.rows.map((r) => r.layer));
    // Nested modules get qualified names, and every booked layer is a real module (or the model itself).
    expect(layers).toContain('layer1.0.conv1');
    expect(layers).toContain('layer2.0.downsample.0');
    for (const l of layers) expect(names.has(l) || l === '(model)').toBe(true);
    const conv = p.rows.filter((r) => r.layer === 'layer1.0.conv1');
    expect(new Set(conv.map((r) => r.phase))).toEqual(new Set(['forward', 'input-grad', 'weight-grad', 'optimizer']));
    const fwd = conv.find((r) => r.op === 'conv.fwd')!;
    // The variant is what the planner chose for that geometry (64 channels, 8x8 at 32 px input).
    const g = conv2dGeometry([2, 64, 8, 8], [64, 64, 3, 3], { padding: 1 });
    expect(fwd.variant).toBe(plan('conv.fwd', g).id);
    expect(fwd.shape).toContain('c64>64 8x8 k3x3');
    expect(fwd.density).toBe(0.25);
    expect(fwd.ms).toBeGreaterThan(0);
    // Nominal GFLOP/s: dense FLOPs of the pass / its time.
    expect(fwd.gflops).toBeCloseTo((2 * 2 * 8 * 8 * 64 * 64 * 9) / (fwd.ms * 1e6), 6);
    expect(conv.find((r) => r.op === 'conv.wgrad')?.phase).toBe('weight-grad');
    expect(p.rows.find((r) => r.layer === 'fc' && r.op === 'matmul' && r.phase === 'weight-grad')).toBeTruthy();
    expect(p.rows.find((r) => r.layer === 'bn1')?.density).toBeNull();
    expect(Object.keys(profileRowJson(fwd))).toEqual([...PROFILE_JSON_FIELDS]);
    const text = formatProfile(p, false);
    expect(text).toMatch(/layer1\.0\.conv1\s+weight-grad/);
    m.dispose();
  });
});

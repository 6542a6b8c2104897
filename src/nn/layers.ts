// Layers as Modules, with PyTorch's argument names, parameter names and default initialisation
// (kaiming-uniform a=sqrt(5) for conv/linear weights, which is uniform(+-1/sqrt(fan_in)), the same
// bound for biases; BatchNorm weight 1, bias 0, running mean 0, running var 1).
import { Module, parameter, buffer, streamOf } from './module.js';
import { type Tensor } from '../tensor/tensor.js';
import { randomUniform } from '../tensor/ops/random.js';
import { writeTensor } from '../tensor/io.js';
import * as F from '../autograd/functional.js';
import * as FN from '../autograd/functional-nn.js';
import { batchNormMaxPool, batchNormRelu, bnPoolTakesBiasGrad, conv2dRelu, convBatchNormFolded, type MaxPoolArgs, type ReluOrder } from '../autograd/fused-nn.js';
import { isGradEnabled } from '../autograd/tape.js';
import { conv2dOutputShape } from '../tensor/ops/conv-geometry.js';
import type { Conv2dOptions, Pair, Padding2d } from '../tensor/ops/conv.js';
import { mapRaw } from '../tensor/ops/map.js';
import type { SparseWeight } from '../tensor/ops/sparse.js';

/** Overwrites t with uniform(-bound, bound) drawn from the stream of `key`. */
export function initUniform(t: Tensor, bound: number, seed: number, key: string): void {
  const r = randomUniform(t.shape, { seed, stream: streamOf(key) }, -bound, bound);
  copyInto(t, r);
  r.dispose();
}

/** Overwrites t with a constant. */
export function initConstant(t: Tensor, v: number): void {
  writeTensor(t, new Float32Array(t.size).fill(v));
}

/** GPU copy src -> dst (same size), keeping dst's identity (parameters are updated in place). */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size) throw new Error(`copyInto: ${src} into ${dst}`);
  mapRaw('copy', 'x0', [{ t: src }], dst.shape, dst.dtype, 0, 0, dst);
}

export interface Conv2dArgs extends Conv2dOptions {
  bias?: boolean;
}

/**
 * Layers whose weight can be pruned carry an explicit 0/1 mask beside it (never inferred from zeros).
 * The forward pass multiplies by the mask, so gradients of pruned weights are exactly zero too.
 */
export interface Prunable {
  readonly weight: Tensor;
  mask: Tensor | null;
  /** Compressed form of the mask (nn/sparse.ts); null = none built, so only dense kernels can run. */
  sparse: SparseState | null;
}

/** A pruned layer's compressed layout, which lets the planner pick sparse kernels (tensor/sparse-plan.ts). */
export interface SparseState {
  sw: SparseWeight;
}

/**
 * A physically smaller stand-in for a layer's forward (nn/compact.ts): it computes the layer on the
 * kept channels of its input and output only, or returns null when the planner's 'compaction' choice is
 * the masked network. The layer's parameters stay full-size: the view gathers from them.
 */
export interface CompactView {
  /** `before` (batch norm's ReLU when it comes first) applies to x only when the view runs. */
  forward(x: Tensor, before?: (x: Tensor) => Tensor): Tensor | null;
}

/**
 * A compacted conv's or linear's view: `forward` as CompactView's; with biasGrad false (a conv before a
 * batch norm that delivers the bias's gradient, only where fused() says the view runs on the fused
 * paths: the planner's fused.compact) the layer leaves its bias out of its recorded op, and lastBias()
 * gives the (gathered) bias whose gradient the op after must deliver.
 */
export interface CompactLayerView {
  forward(x: Tensor, biasGrad?: boolean): Tensor | null;
  fused(): boolean;
  /** The output shape on the kept channels for an input of `xShape` (kept channels too). */
  outShape(xShape: readonly number[]): number[];
  lastBias(): Tensor | null;
}

/**
 * A compacted batch norm's view. forwardFused: the norm with its ReLU and max pool on the fused
 * kernels (and `inBias`'s gradient from its backward, as BatchNorm2d.forward's), or null where the
 * view does not run fused; `forward` is then the separate chain.
 */
export interface CompactNormView extends CompactView {
  /** Whether forwardFused runs (the view runs, on the fused paths). */
  fused(): boolean;
  forwardFused(x: Tensor, relu: ReluOrder | null, pool: MaxPoolArgs | null, inBias: Tensor | null): Tensor | null;
}

export function isPrunable(m: Module): m is Module & Prunable {
  return m instanceof Conv2d || m instanceof Linear;
}

export class Conv2d extends Module implements Prunable {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  mask: Tensor | null = null;
  sparse: SparseState | null = null;
  compact: CompactLayerView | null = null;
  readonly opts: Conv2dOptions;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: Pair,
    args: Conv2dArgs = {},
  ) {
    super();
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    this.weight = this.addParameter('weight', parameter([outChannels, inChannels, kh, kw]));
    this.bias = args.bias === false ? null : this.addParameter('bias', parameter([outChannels]));
    this.opts = { stride: args.stride, padding: args.padding, dilation: args.dilation, groups: args.groups };
  }
  protected override resetParameters(seed: number, prefix: string): void {
    const fanIn = this.weight.size / this.outChannels;
    const bound = 1 / Math.sqrt(fanIn);
    initUniform(this.weight, bound, seed, `${prefix}.weight`);
    if (this.bias) initUniform(this.bias, bound, seed, `${prefix}.bias`);
  }
  /**
   * `biasGrad` false: the op consuming the output delivers the bias's gradient (BatchNorm2d.afterConv).
   * `relu`: relu of the output, use forwardRelu (which keeps hooks seeing the conv's own output).
   */
  forward(x: Tensor, biasGrad = true, relu = false): Tensor {
    if (relu && !biasGrad) throw new Error('Conv2d: a fused ReLU takes the bias gradient itself (biasGrad must stay true)');
    const c = this.compact?.forward(x, biasGrad);
    if (c) return relu ? F.relu(c) : c;
    // A masked layer's kernels, dense or sparse, are the planner's choice (one path, prunedLayer).
    if (this.mask) {
      const y = FN.prunedLayer('conv', x, this.weight, this.mask, this.sparse?.sw ?? null, this.bias, this.opts, biasGrad);
      return relu ? F.relu(y) : y;
    }
    if (relu) return conv2dRelu(x, this.weight, this.bias, this.opts);
    return FN.conv2d(x, this.weight, this.bias, this.opts, biasGrad);
  }

  /**
   * relu(forward(x)), the ReLU in the conv kernel's store where the planner fuses it (fused.conv-relu).
   * Through forward, so the layer keeps its name in profiles; a hooked layer runs the chain, since its
   * hooks (Grad-CAM's taps) must see the conv's own output.
   */
  forwardRelu(x: Tensor): Tensor {
    return this.hasForwardHooks() ? F.relu(this.forward(x)) : this.forward(x, true, true);
  }
}

export class Linear extends Module implements Prunable {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  mask: Tensor | null = null;
  sparse: SparseState | null = null;
  compact: CompactLayerView | null = null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    super();
    this.weight = this.addParameter('weight', parameter([outFeatures, inFeatures]));
    this.bias = bias ? this.addParameter('bias', parameter([outFeatures])) : null;
  }
  protected override resetParameters(seed: number, prefix: string): void {
    const bound = 1 / Math.sqrt(this.inFeatures);
    initUniform(this.weight, bound, seed, `${prefix}.weight`);
    if (this.bias) initUniform(this.bias, bound, seed, `${prefix}.bias`);
  }
  forward(x: Tensor): Tensor {
    const c = this.compact?.forward(x);
    if (c) return c;
    if (this.mask) return FN.prunedLayer('linear', x, this.weight, this.mask, this.sparse?.sw ?? null, this.bias);
    return F.linear(x, this.weight, this.bias);
  }
}

export class BatchNorm2d extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  compact: CompactNormView | null = null;
  constructor(
    readonly numFeatures: number,
    readonly eps = 1e-5,
    readonly momentum = 0.1,
    affine = true,
  ) {
    super();
    this.weight = affine ? this.addParameter('weight', parameter([numFeatures])) : null;
    this.bias = affine ? this.addParameter('bias', parameter([numFeatures])) : null;
    this.runningMean = this.addBuffer('running_mean', buffer([numFeatures]));
    this.runningVar = this.addBuffer('running_var', buffer([numFeatures]));
  }
  protected override resetParameters(): void {
    if (this.weight) initConstant(this.weight, 1);
    if (this.bias) initConstant(this.bias, 0);
    initConstant(this.runningMean, 0);
    initConstant(this.runningVar, 1);
  }
  /**
   * Batch norm of x; with `relu`, also the ReLU before it ('relu-bn': BN(relu(x))) or after it
   * ('bn-relu': relu(BN(x))), and with `pool`, the max pool of the result: the planner may fuse the
   * ReLU into the BN kernels and the pool into the BN apply (autograd/fused-nn.ts).
   */
  forward(x: Tensor, relu?: ReluOrder | null, pool?: MaxPool2d, inBias: Tensor | null = null): Tensor {
    if (inBias && !pool) throw new Error('BatchNorm2d.forward: inBias (the conv bias whose gradient the BN backward delivers) needs the pool after it');
    // The compacted stand-in (nn/compact.ts) runs batch norm on the kept channels: on the fused kernels
    // where the planner's fused.compact says so, else with the ReLU and the pool unfused around it in
    // the same order (the function the fused kernels compute).
    const f = this.compact?.forwardFused(x, relu ?? null, pool?.options() ?? null, inBias);
    if (f) return f;
    if (inBias && this.compact) throw new Error('BatchNorm2d.forward: inBias for a compacted batch norm off its fused path');
    const c = this.compact?.forward(x, relu === 'relu-bn' ? F.relu : undefined);
    if (c) {
      const y = relu === 'bn-relu' ? F.relu(c) : c;
      return pool ? pool.forward(y) : y;
    }
    const args = [this.weight, this.bias, this.runningMean, this.runningVar, this.training, this.momentum, this.eps] as const;
    if (pool) return batchNormMaxPool(x, relu ?? null, ...args, pool.options(), inBias);
    if (relu) return batchNormRelu(x, relu, ...args);
    return FN.batchNorm2d(x, ...args);
  }

  /**
   * This batch norm of conv's output (`forward(conv.forward(x), relu, pool)`). In eval mode the planner
   * may fold it into the conv's weights (fused.conv-bn; differentiable): not with a ReLU between them,
   * a pruned or compacted conv or norm, or a forward hook on either (Grad-CAM's taps see both).
   * With gradients and a pool after it, the BN backward may deliver the conv bias's gradient
   * (fused.bn-bias-grad; pruned convs too, and compacted ones where their views run on the fused
   * paths (fused.compact), not hooked ones: a hooked output has other consumers whose gradients the
   * bias's would miss).
   */
  afterConv(conv: Conv2d, x: Tensor, relu?: ReluOrder | null, pool?: MaxPool2d): Tensor {
    const unhooked = !conv.compact && !this.compact && !conv.hasForwardHooks() && !this.hasForwardHooks();
    // The eval fold first, whether or not gradients are recorded: eval outputs must not depend on that.
    if (!this.training && relu !== 'relu-bn' && unhooked && !conv.mask) {
      const bn = { weight: this.weight, bias: this.bias, runningMean: this.runningMean, runningVar: this.runningVar, eps: this.eps };
      const y = convBatchNormFolded(x, conv, bn, relu === 'bn-relu', pool?.options() ?? null);
      if (y) return y;
    }
    if (pool && conv.bias?.requiresGrad && unhooked && isGradEnabled()) {
      const opts = pool.options();
      if (bnPoolTakesBiasGrad(conv2dOutputShape(x.shape, conv.weight.shape, conv.opts), relu ?? null, this.training, opts)) {
        // Through forward, so the BN's kernels keep its layer name in profiles.
        return this.forward(conv.forward(x, false), relu, pool, conv.bias);
      }
    }
    // A compacted conv is a plain dense conv on fewer channels: on the fused paths the BN backward
    // delivers its (gathered) bias's gradient too, where the norm runs fused or is not compacted.
    const cv = conv.compact;
    const hooked = conv.hasForwardHooks() || this.hasForwardHooks();
    if (pool && conv.bias?.requiresGrad && cv?.fused() && (!this.compact || this.compact.fused()) && !hooked && isGradEnabled()) {
      if (bnPoolTakesBiasGrad(cv.outShape(x.shape), relu ?? null, this.training, pool.options())) {
        const y = conv.forward(x, false);
        return this.forward(y, relu, pool, cv.lastBias());
      }
    }
    return this.forward(conv.forward(x), relu, pool);
  }
}

export interface PoolArgs {
  stride?: Pair;
  padding?: Padding2d;
}

export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly args: PoolArgs = {},
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    const o = this.options();
    return FN.maxPool2d(x, o.kernel, o.stride, o.padding);
  }
  /** Kernel, stride and padding with the defaults filled in. */
  options(): Required<MaxPoolArgs> {
    return { kernel: this.kernelSize, stride: this.args.stride ?? this.kernelSize, padding: this.args.padding ?? 0 };
  }
}

export class AvgPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly args: PoolArgs = {},
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return FN.avgPool2d(x, this.kernelSize, this.args.stride ?? this.kernelSize, this.args.padding ?? 0);
  }
}

/** Global average pooling to 1x1 (the only output size the detectors need). */
export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: 1 = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return FN.adaptiveAvgPool2d1(x);
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return F.relu(x);
  }
}

export class LeakyReLU extends Module {
  constructor(readonly negativeSlope = 0.01) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.leakyRelu(x, this.negativeSlope);
  }
}

export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return F.sigmoid(x);
  }
}

export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

export class Flatten extends Module {
  constructor(readonly startDim = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.flatten(x, this.startDim);
  }
}

/**
 * Seeded inverted dropout. Each forward in training mode draws a fresh mask from the stream of
 * (seed, layer key) at an offset that advances by the tensor size, so a run is reproducible and a
 * resumed run can restore the counter.
 */
export class Dropout extends Module {
  seed = 0;
  private stream = 0;
  /** Elements drawn so far: the offset of the next mask. Saved with checkpoints. */
  drawn = 0;
  compact: CompactView | null = null;
  constructor(readonly p = 0.5) {
    super();
  }
  protected override resetParameters(seed: number, prefix: string): void {
    this.seed = seed;
    this.stream = streamOf(`${prefix}#dropout`);
    this.drawn = 0;
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    const c = this.compact?.forward(x);
    if (c) return c;
    return F.dropout(x, this.p, true, this.draw(x.size));
  }
  /** The stream position of the next mask, advancing it by `n` elements (a compacted dropout draws its full-size mask). */
  draw(n: number): F.DropoutOpts {
    const o = { seed: this.seed, stream: this.stream, offset: this.drawn >>> 0 };
    this.drawn += n;
    return o;
  }
}

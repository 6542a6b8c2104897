// ResNet-18 with torchvision's structure and state-dict keys (conv1, bn1, layer1.0.conv1, ...,
// layer2.0.downsample.0/1, fc), so torchvision weights exported to .safetensors load unchanged
// (fc must have the same number of outputs). 11,177,025 parameters with one logit.
// Initialisation follows torchvision: kaiming-normal (fan_out, relu) for convs, BN 1/0, PyTorch's
// default for fc.
import { Module, streamOf } from '../module.js';
import type { CompactionSite } from '../compact.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, copyInto } from '../layers.js';
import { Sequential } from '../module.js';
import type { Tensor } from '../../tensor/tensor.js';
import { randomNormal } from '../../tensor/ops/random.js';
import * as F from '../../autograd/functional.js';
import type { DetectorOptions } from './meso.js';

/** Conv without bias whose weights are kaiming-normal(fan_out, relu), as torchvision initialises. */
class KaimingConv extends Conv2d {
  protected override resetParameters(seed: number, prefix: string): void {
    const [cout, , kh, kw] = this.weight.shape;
    const std = Math.sqrt(2 / (cout * kh * kw));
    const r = randomNormal(this.weight.shape, { seed, stream: streamOf(`${prefix}.weight`) }, 0, std);
    copyInto(this.weight, r);
    r.dispose();
  }
}

/** conv -> BN as a Sequential (keys `0.*`, `1.*`, as torchvision's downsample) whose BN may fold in eval mode. */
class ConvBn extends Sequential {
  constructor(
    readonly conv: Conv2d,
    readonly bn: BatchNorm2d,
  ) {
    super(conv, bn);
  }
  override forward(x: Tensor): Tensor {
    return this.bn.afterConv(this.conv, x);
  }
}

export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(inC: number, outC: number, stride: number) {
    super();
    this.conv1 = this.addModule('conv1', new KaimingConv(inC, outC, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.addModule('bn1', new BatchNorm2d(outC));
    this.conv2 = this.addModule('conv2', new KaimingConv(outC, outC, 3, { padding: 1, bias: false }));
    this.bn2 = this.addModule('bn2', new BatchNorm2d(outC));
    this.downsample =
      stride !== 1 || inC !== outC
        ? this.addModule('downsample', new ConvBn(new KaimingConv(inC, outC, 1, { stride, bias: false }), new BatchNorm2d(outC)))
        : null;
  }
  /**
   * conv1 -> BN -> ReLU -> conv2 inside the block (nn/compact.ts). The block's output channels are a
   * residual sum shared with the other blocks of the stage and the downsample path: no site.
   */
  compactionSites(): CompactionSite[] {
    return [{ producers: [this.conv1], norm: this.bn1, dropouts: [], consumers: [this.conv2], carry: { after: F.relu } }];
  }
  forward(x: Tensor): Tensor {
    const y = this.bn1.afterConv(this.conv1, x, 'bn-relu');
    const z = this.bn2.afterConv(this.conv2, y);
    const id = this.downsample ? this.downsample.forward(x) : x;
    return F.relu(F.add(z, id));
  }
}

export class ResNet18 extends Module {
  readonly conv1 = this.addModule('conv1', new KaimingConv(3, 64, 7, { stride: 2, padding: 3, bias: false }));
  readonly bn1 = this.addModule('bn1', new BatchNorm2d(64));
  private readonly maxpool = new MaxPool2d(3, { stride: 2, padding: 1 });
  readonly layers: Sequential[];
  private readonly avgpool = new AdaptiveAvgPool2d(1);
  readonly fc: Linear;

  constructor(readonly o: DetectorOptions) {
    super();
    if (!Number.isInteger(o.size) || o.size < 32) throw new Error(`resnet18: input size ${o.size} must be an integer >= 32`);
    const widths = [64, 128, 256, 512];
    let c = 64;
    this.layers = widths.map((w, i) => {
      const stride = i === 0 ? 1 : 2;
      const layer = this.addModule(`layer${i + 1}`, new Sequential(new BasicBlock(c, w, stride), new BasicBlock(w, w, 1)));
      c = w;
      return layer;
    });
    this.fc = this.addModule('fc', new Linear(512, o.outputs ?? 1));
  }

  /** The stem and the four stages; Grad-CAM's layers (TAP_LAYERS) are the stages, layer1..layer4. */
  features(x: Tensor): Tensor {
    let y = this.bn1.afterConv(this.conv1, x, 'bn-relu', this.maxpool);
    for (const l of this.layers) y = l.forward(y);
    return y;
  }

  forward(x: Tensor): Tensor {
    return this.fc.forward(F.flatten(this.avgpool.forward(this.features(x)), 1));
  }

  /** Each block's inner boundary; the stem and the residual streams run masked (nn/compact.ts). */
  compactionSites(): CompactionSite[] {
    return this.layers.flatMap((l) => [...l.children()].flatMap(([, b]) => (b as BasicBlock).compactionSites()));
  }
}

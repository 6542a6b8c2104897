// Meso-4 and MesoInception-4 (Afchar et al. 2018), as in the authors' Keras code, in PyTorch form.
// Keras "same" padding: convs are stride 1 with odd kernels (symmetric pads); pools use the Keras rule
// (out = ceil(in / stride), extra pad at the bottom/right).
// Parameter counts (trainable, PyTorch convention): Meso-4 27,977 at 256x256, 15,689 at 128x128,
// 12,617 at 64x64; MesoInception-4 28,615 at 256x256.
import { Module } from '../module.js';
import type { CompactionSite } from '../compact.js';
import { BatchNorm2d, Conv2d, Dropout, Identity, LeakyReLU, Linear, MaxPool2d } from '../layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import * as F from '../../autograd/functional.js';

/** Spatial size after Meso's four pools (2, 2, 2, 4) with 'same' padding: ceil at each step. */
export function mesoFeatureSize(size: number): number {
  let s = size;
  for (const k of [2, 2, 2, 4]) s = Math.ceil(s / k);
  return s;
}

function checkSize(size: number, model: string): void {
  if (!Number.isInteger(size) || size < 8) throw new Error(`${model}: input size ${size} must be an integer >= 8`);
}

/** Shared tail of both Meso nets: flatten -> dropout -> fc 16 -> LeakyReLU(0.1) -> dropout -> fc. */
class MesoHead extends Module {
  readonly dropout1 = this.addModule('dropout1', new Dropout(0.5));
  readonly fc1: Linear;
  readonly act = new LeakyReLU(0.1);
  readonly dropout2 = this.addModule('dropout2', new Dropout(0.5));
  readonly fc2: Linear;
  constructor(inFeatures: number, outputs: number) {
    super();
    this.fc1 = this.addModule('fc1', new Linear(inFeatures, 16));
    this.fc2 = this.addModule('fc2', new Linear(16, outputs));
  }
  /** last conv -> ReLU -> BN -> pool -> flatten -> dropout -> fc1 -> LeakyReLU -> dropout -> fc2. */
  compactionSites(last: Conv2d, norm: BatchNorm2d): CompactionSite[] {
    return [
      { producers: [last], norm, dropouts: [this.dropout1], consumers: [this.fc1], carry: { before: F.relu } },
      { producers: [this.fc1], norm: null, dropouts: [this.dropout2], consumers: [this.fc2], carry: { before: (x) => this.act.forward(x) } },
    ];
  }
  forward(x: Tensor): Tensor {
    let y = F.flatten(x, 1);
    y = this.dropout1.forward(y);
    y = this.act.forward(this.fc1.forward(y));
    y = this.dropout2.forward(y);
    return this.fc2.forward(y);
  }
}

export interface DetectorOptions {
  /** Square input size in pixels. */
  size: number;
  /** Logits out: 1 (fake score) by default. */
  outputs?: number;
}

export class Meso4 extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly conv4: Conv2d;
  readonly bn4: BatchNorm2d;
  /** The head's layers, at the top level as the saved keys are (`fc1.*`, `fc2.*`). */
  readonly fc1: Linear;
  readonly fc2: Linear;
  private readonly head: MesoHead;
  private readonly pool2 = new MaxPool2d(2, { stride: 2, padding: 'same' });
  private readonly pool4 = new MaxPool2d(4, { stride: 4, padding: 'same' });

  constructor(readonly o: DetectorOptions) {
    super();
    checkSize(o.size, 'meso4');
    this.conv1 = this.addModule('conv1', new Conv2d(3, 8, 3, { padding: 'same' }));
    this.bn1 = this.addModule('bn1', new BatchNorm2d(8));
    this.conv2 = this.addModule('conv2', new Conv2d(8, 8, 5, { padding: 'same' }));
    this.bn2 = this.addModule('bn2', new BatchNorm2d(8));
    this.conv3 = this.addModule('conv3', new Conv2d(8, 16, 5, { padding: 'same' }));
    this.bn3 = this.addModule('bn3', new BatchNorm2d(16));
    this.conv4 = this.addModule('conv4', new Conv2d(16, 16, 5, { padding: 'same' }));
    this.bn4 = this.addModule('bn4', new BatchNorm2d(16));
    const f = mesoFeatureSize(o.size);
    // The head's layers sit at the top level (fc1, fc2) so the keys read like the usual PyTorch ports.
    this.head = new MesoHead(16 * f * f, o.outputs ?? 1);
    for (const [n, m] of this.head.children()) this.addModule(n, m);
    this.fc1 = this.head.fc1;
    this.fc2 = this.head.fc2;
  }

  /** Grad-CAM's layers (TAP_LAYERS): named points after each block that forward hooks attach to. */
  private readonly blocks = [1, 2, 3, 4].map((i) => this.addModule(`block${i}`, new Identity()));

  /** The four conv blocks; Grad-CAM's default layer is the output of the last one. */
  features(x: Tensor): Tensor {
    const [b1, b2, b3, b4] = this.blocks;
    let y = b1.forward(this.bn1.afterConv(this.conv1, x, 'relu-bn', this.pool2));
    y = b2.forward(this.bn2.afterConv(this.conv2, y, 'relu-bn', this.pool2));
    y = b3.forward(this.bn3.afterConv(this.conv3, y, 'relu-bn', this.pool2));
    return b4.forward(this.bn4.afterConv(this.conv4, y, 'relu-bn', this.pool4));
  }

  forward(x: Tensor): Tensor {
    return this.head.forward(this.features(x));
  }

  /** conv -> ReLU -> BN -> pool between the convs, then flatten -> dropout -> fc1 -> LeakyReLU -> dropout -> fc2 (nn/compact.ts). */
  compactionSites(): CompactionSite[] {
    const { conv1, bn1, conv2, bn2, conv3, bn3, conv4, bn4, head } = this;
    const carry = { before: F.relu };
    return [
      { producers: [conv1], norm: bn1, dropouts: [], consumers: [conv2], carry },
      { producers: [conv2], norm: bn2, dropouts: [], consumers: [conv3], carry },
      { producers: [conv3], norm: bn3, dropouts: [], consumers: [conv4], carry },
      ...head.compactionSites(conv4, bn4),
    ];
  }
}

/**
 * Inception layer of MesoInception-4: 1x1 | 1x1->3x3 | 1x1->3x3 dilation 2 | 1x1->3x3 dilation 3,
 * each conv followed by ReLU (as in the Keras original), concatenated on channels.
 */
export class InceptionLayer extends Module {
  readonly b1: Conv2d;
  readonly b2a: Conv2d;
  readonly b2b: Conv2d;
  readonly b3a: Conv2d;
  readonly b3b: Conv2d;
  readonly b4a: Conv2d;
  readonly b4b: Conv2d;
  constructor(inC: number, a: number, b: number, c: number, d: number) {
    super();
    this.b1 = this.addModule('b1', new Conv2d(inC, a, 1));
    this.b2a = this.addModule('b2a', new Conv2d(inC, b, 1));
    this.b2b = this.addModule('b2b', new Conv2d(b, b, 3, { padding: 1 }));
    this.b3a = this.addModule('b3a', new Conv2d(inC, c, 1));
    this.b3b = this.addModule('b3b', new Conv2d(c, c, 3, { padding: 2, dilation: 2 }));
    this.b4a = this.addModule('b4a', new Conv2d(inC, d, 1));
    this.b4b = this.addModule('b4b', new Conv2d(d, d, 3, { padding: 3, dilation: 3 }));
  }
  /** The branches' 1x1 -> ReLU -> 3x3 boundaries (nn/compact.ts). */
  compactionSites(): CompactionSite[] {
    const carry = { before: F.relu };
    return [
      { producers: [this.b2a], norm: null, dropouts: [], consumers: [this.b2b], carry },
      { producers: [this.b3a], norm: null, dropouts: [], consumers: [this.b3b], carry },
      { producers: [this.b4a], norm: null, dropouts: [], consumers: [this.b4b], carry },
    ];
  }
  /** The convs whose outputs, each through a ReLU, are concatenated. */
  outputs(): Conv2d[] {
    return [this.b1, this.b2b, this.b3b, this.b4b];
  }
  /** The convs that read the layer's input. */
  inputs(): Conv2d[] {
    return [this.b1, this.b2a, this.b3a, this.b4a];
  }
  forward(x: Tensor): Tensor {
    const r = (m: Conv2d, v: Tensor) => m.forwardRelu(v);
    return F.concat(
      [r(this.b1, x), r(this.b2b, r(this.b2a, x)), r(this.b3b, r(this.b3a, x)), r(this.b4b, r(this.b4a, x))],
      1,
    );
  }
}

export class MesoInception4 extends Module {
  readonly inc1 = this.addModule('inc1', new InceptionLayer(3, 1, 4, 4, 2));
  readonly bn1 = this.addModule('bn1', new BatchNorm2d(11));
  readonly inc2 = this.addModule('inc2', new InceptionLayer(11, 2, 4, 4, 2));
  readonly bn2 = this.addModule('bn2', new BatchNorm2d(12));
  readonly conv3 = this.addModule('conv3', new Conv2d(12, 16, 5, { padding: 'same' }));
  readonly bn3 = this.addModule('bn3', new BatchNorm2d(16));
  readonly conv4 = this.addModule('conv4', new Conv2d(16, 16, 5, { padding: 'same' }));
  readonly bn4 = this.addModule('bn4', new BatchNorm2d(16));
  /** The head's layers, at the top level as the saved keys are (`fc1.*`, `fc2.*`). */
  readonly fc1: Linear;
  readonly fc2: Linear;
  private readonly head: MesoHead;
  private readonly pool2 = new MaxPool2d(2, { stride: 2, padding: 'same' });
  private readonly pool4 = new MaxPool2d(4, { stride: 4, padding: 'same' });

  constructor(readonly o: DetectorOptions) {
    super();
    checkSize(o.size, 'mesoinception4');
    const f = mesoFeatureSize(o.size);
    this.head = new MesoHead(16 * f * f, o.outputs ?? 1);
    for (const [n, m] of this.head.children()) this.addModule(n, m);
    this.fc1 = this.head.fc1;
    this.fc2 = this.head.fc2;
  }

  /** Grad-CAM's layers (TAP_LAYERS): named points after each block that forward hooks attach to. */
  private readonly blocks = [1, 2, 3, 4].map((i) => this.addModule(`block${i}`, new Identity()));

  features(x: Tensor): Tensor {
    const [b1, b2, b3, b4] = this.blocks;
    let y = b1.forward(this.bn1.forward(this.inc1.forward(x), null, this.pool2));
    y = b2.forward(this.bn2.forward(this.inc2.forward(y), null, this.pool2));
    y = b3.forward(this.bn3.afterConv(this.conv3, y, 'relu-bn', this.pool2));
    return b4.forward(this.bn4.afterConv(this.conv4, y, 'relu-bn', this.pool4));
  }

  forward(x: Tensor): Tensor {
    return this.head.forward(this.features(x));
  }

  /**
   * Inside each inception layer the 1x1 -> 3x3 boundaries; between them the concatenated branch outputs
   * (each through a ReLU) -> BN -> pool -> every branch of the next layer, or conv3; then as Meso-4.
   */
  compactionSites(): CompactionSite[] {
    const { inc1, bn1, inc2, bn2, conv3, bn3, conv4, bn4, head } = this;
    const carry = { before: F.relu };
    return [
      ...inc1.compactionSites(),
      { producers: inc1.outputs(), norm: bn1, dropouts: [], consumers: inc2.inputs(), carry },
      ...inc2.compactionSites(),
      { producers: inc2.outputs(), norm: bn2, dropouts: [], consumers: [conv3], carry },
      { producers: [conv3], norm: bn3, dropouts: [], consumers: [conv4], carry },
      ...head.compactionSites(conv4, bn4),
    ];
  }
}

// CNN-5: five conv3x3 -> BN -> ReLU -> maxpool(2) blocks, global average pool, linear head.
// The study gives only "a 5-layer CNN with batch norm" and 0.300 M parameters; widths 16-32-64-128-176
// give 301,377 trainable parameters with one logit, the closest simple progression to that figure.
import { Module } from '../module.js';
import type { CompactionSite } from '../compact.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Identity, Linear, MaxPool2d } from '../layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import * as F from '../../autograd/functional.js';
import type { DetectorOptions } from './meso.js';

export const CNN5_WIDTHS = [16, 32, 64, 128, 176] as const;

export class CNN5 extends Module {
  readonly convs: Conv2d[] = [];
  readonly bns: BatchNorm2d[] = [];
  readonly fc: Linear;
  private readonly pool = new MaxPool2d(2, { stride: 2, padding: 'same' });
  private readonly gap = new AdaptiveAvgPool2d(1);

  constructor(readonly o: DetectorOptions) {
    super();
    if (!Number.isInteger(o.size) || o.size < 32) throw new Error(`cnn5: input size ${o.size} must be an integer >= 32`);
    let c = 3;
    CNN5_WIDTHS.forEach((w, i) => {
      this.convs.push(this.addModule(`conv${i + 1}`, new Conv2d(c, w, 3, { padding: 1 })));
      this.bns.push(this.addModule(`bn${i + 1}`, new BatchNorm2d(w)));
      c = w;
    });
    this.fc = this.addModule('fc', new Linear(c, o.outputs ?? 1));
  }

  /** Grad-CAM's layers (TAP_LAYERS): named points after each block that forward hooks attach to. */
  private readonly blocks = CNN5_WIDTHS.map((_, i) => this.addModule(`block${i + 1}`, new Identity()));

  features(x: Tensor): Tensor {
    let y = x;
    for (let i = 0; i < this.convs.length; i++) y = this.blocks[i].forward(this.bns[i].afterConv(this.convs[i], y, 'bn-relu', this.pool));
    return y;
  }

  forward(x: Tensor): Tensor {
    return this.fc.forward(F.flatten(this.gap.forward(this.features(x)), 1));
  }

  /** conv -> BN -> ReLU -> pool between the convs, global average pool -> flatten -> fc after the last (nn/compact.ts). */
  compactionSites(): CompactionSite[] {
    return this.convs.map((c, i) => ({ producers: [c], norm: this.bns[i], dropouts: [], consumers: [this.convs[i + 1] ?? this.fc], carry: { after: F.relu } }));
  }
}

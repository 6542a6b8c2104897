// A loader batch as the model's input tensor. Byte batches (image datasets) go up as uint8 and are
// converted, normalised and flipped on the device (tensor/ops/convert.ts); float batches (synthetic
// data) go up as they are. Both give the same bits for the same pixels (tests/data/convert.test.ts).
import type { Batch } from '../data/loader.js';
import { imageBytesToFloat } from '../tensor/ops/convert.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';

export function batchInput(b: Batch): Tensor {
  const pb = b.pixels;
  if (pb) return imageBytesToFloat(pb.data, pb.flips, pb.table, b.n, b.shape[2]);
  return fromArray(b.x, b.shape);
}

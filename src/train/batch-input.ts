// A loader batch as the model's input tensor. Byte batches (image datasets) go up as uint8 and are
// converted, normalised and flipped on the device (tensor/ops/convert.ts); float batches (synthetic
// data) go up as they are. Both give the same bits for the same pixels (tests/data/convert.test.ts).
import type { Batch } from '../data/loader.js';
import { imageBytesToFloat } from '../tensor/ops/convert.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';

/**
 * The input tensor of a batch. A byte batch's array goes back to its loader once uploaded (the upload
 * copies it), for the loader's next batch: read `b.x` before this, if at all.
 */
export function batchInput(b: Batch): Tensor {
  const pb = b.pixels;
  if (!pb) return fromArray(b.x, b.shape);
  const t = imageBytesToFloat(pb.data, pb.flips, pb.table, b.n, b.shape[2]);
  pb.recycle?.();
  return t;
}

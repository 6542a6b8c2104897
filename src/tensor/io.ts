// Host writes into existing tensors. queue.writeBuffer runs before commands that are recorded but
// not yet submitted, so a tensor touched by the pending batch must see that batch submitted first,
// or the write would land before (and be clobbered by, or leak into) those commands.
import { device } from './device.js';
import { queue } from './queue.js';
import type { Tensor } from './tensor.js';

export function writeTensor(t: Tensor, data: ArrayLike<number> & ArrayBufferView): void {
  if (data.length !== t.size) throw new Error(`write: ${data.length} values for ${t}`);
  if (t.buf.lastBatch >= queue.batch) queue.flush();
  const typed =
    t.dtype === 'f32' ? (data instanceof Float32Array ? data : Float32Array.from(data)) : t.dtype === 'i32' ? Int32Array.from(data) : Uint32Array.from(data);
  if (t.size > 0) device().gpu.queue.writeBuffer(t.buf.buffer, t.buf.offset ?? 0, typed.buffer, typed.byteOffset, t.size * 4);
}

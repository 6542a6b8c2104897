// Byte batches to the device through a ring of mapped staging buffers.
//
// queue.writeBuffer copies the bytes into Dawn's staging memory and then into the buffer. Here the host
// writes straight into a MAP_WRITE buffer that stays allocated, and one recorded copy moves it into a
// storage buffer, in order with the dispatches around it (so the destination needs no upload hazard
// check). The same two copies, yet measured faster on lavapipe (2 cores, batch 32, interleaved in one
// process): upload + convert 1.3-1.4x the images/s of writeBuffer at 256 px (a 6 MiB batch; why
// writeBuffer is slower there is not traced: Dawn's staging for writes that large is the likely
// place), 1.02-1.06x at 64 px.
//
// A slot is mapped again (mapAsync) only once the batch holding its copy is submitted: submitting a
// command that reads a mapped buffer is an error. When no mapped slot is free and the ring is full,
// the upload falls back to writeBuffer, so nothing waits for a map.
import { device, onDeviceClose } from '../device.js';
import { queue } from '../queue.js';
import { sizeClass } from '../pool.js';
import { empty, fromArray, type Tensor } from '../tensor.js';

/** Slots: three steps in flight, one being filled, one spare. */
const MAX_SLOTS = 5;

interface Slot {
  buffer: GPUBuffer;
  bytes: number;
  /** the batch whose commands read this slot last */
  lastBatch: number;
  state: 'mapped' | 'pending' | 'in-use';
}

let slots: Slot[] = [];
onDeviceClose(() => {
  slots = [];
});

function remap(s: Slot): void {
  s.state = 'pending';
  s.buffer.mapAsync(GPUMapMode.WRITE).then(
    () => {
      s.state = 'mapped';
    },
    () => {
      // A lost device or a destroyed buffer: the slot leaves the ring.
      slots = slots.filter((x) => x !== s);
    },
  );
}

/** A mapped slot of at least `bytes`, or null (the ring is busy and full). */
function takeSlot(bytes: number): Slot | null {
  for (const s of slots) if (s.state === 'in-use' && s.lastBatch <= queue.submittedBatch) remap(s);
  const free = slots.filter((s) => s.state === 'mapped' && s.bytes >= bytes);
  if (free.length) return free.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  if (slots.length >= MAX_SLOTS) {
    // Make room for a larger batch size only by dropping a mapped slot that is too small.
    const small = slots.find((s) => s.state === 'mapped' && s.bytes < bytes);
    if (!small) return null;
    small.buffer.destroy();
    slots = slots.filter((s) => s !== small);
  }
  const size = sizeClass(bytes);
  const s: Slot = { buffer: device().gpu.createBuffer({ size, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC, mappedAtCreation: true }), bytes: size, lastBatch: -1, state: 'mapped' };
  slots.push(s);
  return s;
}

/**
 * A u32 tensor of ceil(total / 4) words holding `bytes[0, total)` (zero-padded to a whole word), filled
 * through the staging ring, or by writeBuffer when the ring is busy.
 */
export function uploadBytes(bytes: Uint8Array, total: number): Tensor {
  const words = Math.ceil(total / 4);
  const padded = words * 4;
  const s = takeSlot(padded);
  if (!s) {
    // writeBuffer runs before the commands recorded so far: fromArray takes a buffer none of them uses.
    const aligned = bytes.byteOffset % 4 === 0 && bytes.length >= padded;
    const src = aligned ? bytes : (() => {
      const pad = new Uint8Array(padded);
      pad.set(bytes.subarray(0, total));
      return pad;
    })();
    return fromArray(new Uint32Array(src.buffer, src.byteOffset, words), [words], 'u32');
  }
  const view = new Uint8Array(s.buffer.getMappedRange(0, padded));
  view.set(bytes.subarray(0, total));
  view.fill(0, total);
  s.buffer.unmap();
  s.state = 'in-use';
  // The copy is recorded after every command so far, so any pooled buffer can take it.
  const out = empty([words], 'u32');
  const src = { buffer: s.buffer, bytes: s.bytes, lastBatch: -1, used: padded };
  queue.copy(src, 0, out.buf.buffer, out.buf.offset ?? 0, padded);
  s.lastBatch = src.lastBatch;
  return out;
}

/** Slots in the ring now (tests). */
export function uploadSlots(): number {
  return slots.length;
}

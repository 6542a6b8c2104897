// Tensor: a shape, a dtype and a reference-counted GPU buffer. Always contiguous (NCHW row-major);
// reshape shares storage, every other layout change is a copy kernel (see layout.ts). Keeping one
// layout keeps every kernel simple and every kernel test meaningful.
//
// Memory is released deterministically: dispose() returns the buffer to the pool when the last view
// is gone; tidy() disposes everything created inside it except what it returns or keep()s.
import { pool, type PooledBuffer } from './pool.js';
import { queue } from './queue.js';
import { device, onDeviceClose } from './device.js';

export type DType = 'f32' | 'i32' | 'u32';
export type Shape = readonly number[];
export type HostArray<D extends DType = DType> = D extends 'f32'
  ? Float32Array
  : D extends 'i32'
    ? Int32Array
    : Uint32Array;

export class Storage {
  refs = 1;
  constructor(
    readonly buf: PooledBuffer,
    /** Element count the storage was made for (the buffer may be larger: size classes). */
    readonly size: number,
  ) {}
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) pool.release(this.buf);
  }
}

/** What autograd attaches to a tensor; kept opaque here so that tensor/ does not depend on autograd/. */
export interface GradNode {
  readonly name: string;
}

let nextId = 1;

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: Shape, what = 'shape'): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${what} [${shape.join(', ')}] has a bad dimension ${d}`);
  }
}

export class Tensor {
  readonly id = nextId++;
  readonly shape: Shape;
  readonly size: number;
  private storage_: Storage | null;
  /** Autograd state (set by src/autograd). */
  requiresGrad = false;
  grad: Tensor | null = null;
  gradNode: GradNode | null = null;
  /** Human-readable name (parameters carry their state-dict key). */
  name = '';

  constructor(
    storage: Storage,
    shape: Shape,
    readonly dtype: DType = 'f32',
  ) {
    checkShape(shape);
    this.shape = Object.freeze([...shape]);
    this.size = numel(shape);
    if (this.size > storage.size) {
      throw new Error(`tensor of shape [${shape.join(', ')}] needs ${this.size} elements, storage has ${storage.size}`);
    }
    this.storage_ = storage;
    scopes.track(this);
  }

  get storage(): Storage {
    if (!this.storage_) throw new Error(`tensor #${this.id}${this.name ? ` (${this.name})` : ''} was used after dispose()`);
    return this.storage_;
  }
  get buf(): PooledBuffer {
    return this.storage.buf;
  }
  get disposed(): boolean {
    return this.storage_ === null;
  }
  get rank(): number {
    return this.shape.length;
  }
  get bytes(): number {
    return this.size * 4;
  }

  dispose(): void {
    if (!this.storage_) return;
    this.storage_.release();
    this.storage_ = null;
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
    this.gradNode = null;
  }

  /**
   * @internal Moves this tensor onto `storage`, which the caller has filled with its values, keeping
   * the tensor's identity (modules hold their parameters by reference); takes over the caller's
   * reference and releases the old storage. The optimizer gathers parameters into one arena this way
   * (tensor/arena.ts). A reshape() view made before still shows the old storage.
   */
  adoptStorage(storage: Storage): void {
    if (storage.size < this.size) throw new Error(`adoptStorage: ${this} needs ${this.size} elements, storage has ${storage.size}`);
    const old = this.storage;
    this.storage_ = storage;
    old.release();
  }

  /** A view of the same storage with another shape (no copy). -1 infers one dimension. */
  reshape(shape: Shape): Tensor {
    const s = inferShape(shape, this.size);
    this.storage.retain();
    return new Tensor(this.storage, s, this.dtype);
  }

  /** Reads the values back to the host (submits pending work). */
  async toArray(): Promise<HostArray> {
    const bytes = await readback(this.buf, this.size * 4);
    return this.dtype === 'f32'
      ? new Float32Array(bytes)
      : this.dtype === 'i32'
        ? new Int32Array(bytes)
        : new Uint32Array(bytes);
  }

  /** The single value of a 1-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs 1 element, tensor has shape [${this.shape.join(', ')}]`);
    return (await this.toArray())[0];
  }

  toString(): string {
    return `Tensor(#${this.id}${this.name ? ` ${this.name}` : ''}, [${this.shape.join(', ')}], ${this.dtype})`;
  }
}

export function inferShape(shape: Shape, size: number): number[] {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(s.filter((_, i) => i !== neg));
    if (rest === 0 || size % rest !== 0) throw new Error(`cannot reshape ${size} elements to [${shape.join(', ')}]`);
    s[neg] = size / rest;
  }
  if (numel(s) !== size) throw new Error(`cannot reshape ${size} elements to [${shape.join(', ')}]`);
  return s;
}

/** A new, uninitialised tensor. */
export function empty(shape: Shape, dtype: DType = 'f32'): Tensor {
  checkShape(shape);
  const n = numel(shape);
  const buf = pool.acquire(Math.max(4, n * 4), false, queue.submittedBatch);
  return new Tensor(new Storage(buf, n), shape, dtype);
}

/** A tensor holding host data (uploaded with writeBuffer; see the hazard note in pool.ts). */
export function fromArray(data: ArrayLike<number> | HostArray, shape?: Shape, dtype?: DType): Tensor {
  const dt: DType = dtype ?? (data instanceof Int32Array ? 'i32' : data instanceof Uint32Array ? 'u32' : 'f32');
  const s = shape ?? [data.length];
  checkShape(s);
  const n = numel(s);
  if (n !== data.length) throw new Error(`fromArray: ${data.length} values do not fill shape [${s.join(', ')}]`);
  const typed =
    dt === 'f32'
      ? data instanceof Float32Array
        ? data
        : Float32Array.from(data)
      : dt === 'i32'
        ? data instanceof Int32Array
          ? data
          : Int32Array.from(data)
        : data instanceof Uint32Array
          ? data
          : Uint32Array.from(data);
  const buf = pool.acquire(Math.max(4, n * 4), true, queue.submittedBatch);
  if (n > 0) device().gpu.queue.writeBuffer(buf.buffer, 0, typed.buffer, typed.byteOffset, n * 4);
  return new Tensor(new Storage(buf, n), s, dt);
}

export function scalarTensor(v: number, dtype: DType = 'f32'): Tensor {
  return fromArray([v], [], dtype);
}

// ---------------------------------------------------------------------------------------------
// Readback

// Mappable buffers reused across readbacks; they belong to one device, so a close drops them.
const staging: GPUBuffer[] = [];
onDeviceClose(() => {
  staging.length = 0;
});

async function readback(src: PooledBuffer, bytes: number): Promise<ArrayBuffer> {
  if (bytes === 0) return new ArrayBuffer(0);
  const size = Math.ceil(bytes / 4) * 4;
  const gpu = device().gpu;
  let idx = staging.findIndex((b) => b.size >= size);
  const st =
    idx >= 0
      ? staging.splice(idx, 1)[0]
      : gpu.createBuffer({ size: Math.max(256, 2 ** Math.ceil(Math.log2(size))), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  queue.copy(src, 0, st, 0, size);
  queue.flush();
  await st.mapAsync(GPUMapMode.READ, 0, size);
  const out = st.getMappedRange(0, size).slice(0, bytes);
  st.unmap();
  staging.push(st);
  const err = device().takeError();
  if (err) throw new Error(`GPU error in queued work: ${err}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scopes

class ScopeStack {
  private stack: Set<Tensor>[] = [];
  track(t: Tensor): void {
    const top = this.stack[this.stack.length - 1];
    if (top) top.add(t);
  }
  untrack(t: Tensor): void {
    for (const s of this.stack) s.delete(t);
  }
  push(): void {
    this.stack.push(new Set());
  }
  /** Ends the top scope, disposing everything in it except `survivors` (moved to the parent scope). */
  pop(survivors: Set<Tensor>): void {
    const top = this.stack.pop();
    if (!top) throw new Error('scope stack underflow');
    const parent = this.stack[this.stack.length - 1];
    for (const t of top) {
      if (survivors.has(t)) parent?.add(t);
      else t.dispose();
    }
  }
  get depth(): number {
    return this.stack.length;
  }
}

const scopes = new ScopeStack();

type TensorContainer = Tensor | readonly TensorContainer[] | { readonly [k: string]: TensorContainer } | void | number | string | boolean | null | undefined;

function collect(v: unknown, into: Set<Tensor>): void {
  if (v instanceof Tensor) into.add(v);
  else if (Array.isArray(v)) for (const x of v) collect(x, into);
  else if (v && typeof v === 'object' && !(ArrayBuffer.isView(v))) for (const x of Object.values(v)) collect(x, into);
}

/**
 * Runs fn and disposes every tensor created inside it, except the tensors it returns (found in
 * arrays/objects too) and those passed to keep(). Synchronous on purpose: an await inside would let
 * unrelated work register tensors in this scope.
 */
export function tidy<T extends TensorContainer>(fn: () => T): T {
  scopes.push();
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop(new Set());
    throw e;
  }
  if (result instanceof Promise) throw new Error('tidy(): fn must be synchronous');
  const keepSet = new Set<Tensor>();
  collect(result, keepSet);
  scopes.pop(keepSet);
  return result;
}

/** Exempts a tensor from every enclosing tidy() scope: its owner disposes it. */
export function keep<T extends Tensor>(t: T): T {
  scopes.untrack(t);
  return t;
}

export function scopeDepth(): number {
  return scopes.depth;
}

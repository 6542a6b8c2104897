// Host-side packing of a kernel's uniform struct. Fields are 4-byte words; vec4 arrays start on
// 16-byte boundaries as WGSL's uniform layout requires, so callers lay out words in struct order.
export class Params {
  private words: number;
  readonly u32: Uint32Array;
  readonly f32: Float32Array;
  readonly i32: Int32Array;
  private at = 0;
  constructor(words: number) {
    this.words = Math.ceil(words / 4) * 4;
    this.u32 = new Uint32Array(this.words);
    this.f32 = new Float32Array(this.u32.buffer);
    this.i32 = new Int32Array(this.u32.buffer);
  }
  u(v: number): this {
    this.u32[this.at++] = v >>> 0;
    return this;
  }
  i(v: number): this {
    this.i32[this.at++] = v | 0;
    return this;
  }
  f(v: number): this {
    this.f32[this.at++] = v;
    return this;
  }
  /** Pads to the next 16-byte boundary (start of a vec4 or array<vec4>). */
  align16(): this {
    this.at = Math.ceil(this.at / 4) * 4;
    return this;
  }
  /** An array<vec4<u32>, n/4> filled with `vals`, zero padded to `len` words. */
  uArr(vals: readonly number[], len: number): this {
    this.align16();
    if (vals.length > len) throw new Error(`Params: ${vals.length} values for an array of ${len}`);
    for (let i = 0; i < len; i++) this.u32[this.at + i] = (vals[i] ?? 0) >>> 0;
    this.at += len;
    return this;
  }
  get view(): Uint32Array {
    return this.u32;
  }
}

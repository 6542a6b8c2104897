// toCHWBytes' two passes as WebAssembly, assembled here from a few dozen instructions (no toolchain,
// no binary in the repository). Why: the resize is most of a decode worker's time (the horizontal pass
// alone 60% of it at 64 px), and WebAssembly runs the same loops without the bounds checks and
// tagged-number handling of the JavaScript ones, about twice as fast.
//
// The arithmetic is the JavaScript passes' own, operation for operation (image.ts, horizontalPass and
// verticalPass; tests/data/image.test.ts holds both to the float path, bit for bit): the horizontal pass
// sums each output's taps in order in float64 (byte -> float32(byte / 255) by table, times a float64
// weight) and rounds the sum to float32; the vertical pass rounds its running sum to float32 after every
// tap; the result is clamped to [0, 255] and truncated after adding 0.5. IEEE-754 float64 operations give
// the same bits in either engine; the one difference, a sum that starts at 0 instead of at the first
// product, adds +0 to a non-negative number, which changes nothing.

// ---------------------------------------------------------------------------------------------
// A minimal assembler: just what the two functions use.

const I32 = 0x7f, F64 = 0x7c, V128 = 0x7b;
const op = {
  block: 0x02, loop: 0x03, end: 0x0b, br: 0x0c, brIf: 0x0d,
  get: 0x20, set: 0x21, tee: 0x22,
  i32Load: 0x28, f32Load: 0x2a, f64Load: 0x2b, i32Load8u: 0x2d, f32Store: 0x38, i32Store8: 0x3a,
  i32Const: 0x41, f64Const: 0x44,
  if: 0x04, i32LtS: 0x48, i32GeS: 0x4e, i32Add: 0x6a, i32Sub: 0x6b, i32Mul: 0x6c, i32Shl: 0x74, i32ShrU: 0x76,
  f64Add: 0xa0, f64Mul: 0xa2, f64Min: 0xa4, f64Max: 0xa5,
  i32TruncF64U: 0xab, f32DemoteF64: 0xb6, f64PromoteF32: 0xbb,
} as const;

/** SIMD instructions (prefix 0xfd, then the opcode as LEB128). */
const simd = {
  load: 0x00, store: 0x0b, f64x2Splat: 0x14, f64x2ExtractLane: 0x21, f64x2ReplaceLane: 0x22, load64Zero: 0x5d, f32x4DemoteZero: 0x5e, f64x2PromoteLow: 0x5f,
  i32x4ExtractLane: 0x1b, f64x2Add: 0xf0, f64x2Mul: 0xf2, f64x2Min: 0xf4, f64x2Max: 0xf5, i32x4TruncSatF64x2UZero: 0xfd,
} as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** One function body under construction: named locals, structured loops. */
class Body {
  readonly code: number[] = [];
  private readonly names = new Map<string, number>();
  private readonly extra: number[] = [];
  constructor(params: readonly string[]) {
    params.forEach((p, i) => this.names.set(p, i));
  }
  /** Declares locals (after the parameters). */
  locals(type: number, ...names: string[]): this {
    for (const n of names) {
      this.names.set(n, this.names.size);
      this.extra.push(type);
    }
    return this;
  }
  private idx(name: string): number {
    const i = this.names.get(name);
    if (i === undefined) throw new Error(`resize-wasm: no local ${name}`);
    return i;
  }
  get(n: string): this {
    this.code.push(op.get, ...uleb(this.idx(n)));
    return this;
  }
  set(n: string): this {
    this.code.push(op.set, ...uleb(this.idx(n)));
    return this;
  }
  i32(v: number): this {
    this.code.push(op.i32Const, ...sleb(v));
    return this;
  }
  f64(v: number): this {
    const b = new Uint8Array(new Float64Array([v]).buffer);
    this.code.push(op.f64Const, ...b);
    return this;
  }
  /** A memory access: natural alignment `align` (log2 bytes) and a constant byte offset. */
  mem(opcode: number, align: number, offset = 0): this {
    this.code.push(opcode, align, ...uleb(offset));
    return this;
  }
  simd(opcode: number): this {
    this.code.push(0xfd, ...uleb(opcode));
    return this;
  }
  simdMem(opcode: number, align: number, offset = 0): this {
    this.code.push(0xfd, ...uleb(opcode), align, ...uleb(offset));
    return this;
  }
  ops(...codes: number[]): this {
    this.code.push(...codes);
    return this;
  }
  /** `for (i = <from>; i < limit; i++) body`: `from` pushes the start value. */
  forRange(i: string, from: (b: this) => void, limit: string, body: (b: this) => void): this {
    from(this);
    this.set(i);
    this.code.push(op.block, 0x40, op.loop, 0x40);
    this.get(i).get(limit).ops(op.i32GeS, op.brIf, 1);
    body(this);
    this.get(i).i32(1).ops(op.i32Add).set(i);
    this.code.push(op.br, 0, op.end, op.end);
    return this;
  }
  /** local += value of `push` (i32). */
  addTo(n: string, push: (b: this) => void): this {
    this.get(n);
    push(this);
    return this.ops(op.i32Add).set(n);
  }
  encode(): number[] {
    const groups: number[] = [];
    let count = 0;
    for (let i = 0; i < this.extra.length; i++) {
      count++;
      if (i + 1 === this.extra.length || this.extra[i + 1] !== this.extra[i]) {
        groups.push(...uleb(count), this.extra[i]);
        count = 0;
      }
    }
    const runs = this.extra.reduce((a, t, i) => a + (i + 1 === this.extra.length || this.extra[i + 1] !== t ? 1 : 0), 0);
    const body = [...uleb(runs), ...groups, ...this.code, op.end];
    return [...uleb(body.length), ...body];
  }
}

// ---------------------------------------------------------------------------------------------
// The two passes.

const H_PARAMS = ['img', 'rowBytes', 'rows', 'xs', 'xn', 'xw', 'xtBytes', 'size', 'mid', 'U', 'pair'] as const;

/**
 * hpass: `rows` rows of the image at `img` (`rowBytes` per row, HWC bytes) to `size` columns of float32
 * at `mid` (12 * size bytes a row, each row planar: the R values, then G, then B). Output x reads xn[x] taps from byte
 * xs[x] of the row, with float64 weights at xw + x * xtBytes; U holds float32(v / 255) for v = 0..255
 * as float64. Two rows at a time, one per f64x2 lane (they share their weights): each pair of rows is
 * first turned into float64 values once (`pair`: 16 bytes per byte of a row), instead of a table lookup
 * per tap. With an odd row count the last lane reads the row after the image and writes the row after
 * `mid`'s last: the caller leaves room for both, and nothing reads them.
 */
function hpass(): Body {
  const b = new Body(H_PARAMS).locals(I32, 'p', 'pairs', 'r0', 'r1', 'i', 'midRow', 'plane', 'mx', 'x', 'o', 'n', 'wi', 'k').locals(V128, 'w', 'a0', 'a1', 'a2');
  const unit = (row: string): void => {
    // U[byte i of row] as f64
    b.get('U').get(row).get('i').ops(op.i32Add).mem(op.i32Load8u, 0).i32(3).ops(op.i32Shl, op.i32Add).mem(op.f64Load, 3);
  };
  b.get('rows').i32(1).ops(op.i32Add).i32(1).ops(op.i32ShrU).set('pairs');
  b.get('size').i32(12).ops(op.i32Mul).set('midRow');
  b.get('size').i32(4).ops(op.i32Mul).set('plane'); // bytes of one channel of a mid row
  b.forRange('p', (s) => s.i32(0), 'pairs', () => {
    b.get('img').get('p').i32(1).ops(op.i32Shl).get('rowBytes').ops(op.i32Mul, op.i32Add).set('r0');
    b.get('r0').get('rowBytes').ops(op.i32Add).set('r1');
    b.forRange('i', (s) => s.i32(0), 'rowBytes', () => {
      b.get('pair').get('i').i32(4).ops(op.i32Shl, op.i32Add);
      unit('r0');
      b.simd(simd.f64x2Splat);
      unit('r1');
      b.simd(simd.f64x2ReplaceLane).ops(1);
      b.simdMem(simd.store, 3);
    });
    b.get('mid').get('p').i32(1).ops(op.i32Shl).get('midRow').ops(op.i32Mul, op.i32Add).set('mx');
    b.forRange('x', (s) => s.i32(0), 'size', () => {
      b.get('pair').get('xs').get('x').i32(2).ops(op.i32Shl, op.i32Add).mem(op.i32Load, 2).i32(4).ops(op.i32Shl, op.i32Add).set('o');
      b.get('xn').get('x').i32(2).ops(op.i32Shl, op.i32Add).mem(op.i32Load, 2).set('n');
      b.get('xw').get('x').get('xtBytes').ops(op.i32Mul, op.i32Add).set('wi');
      b.f64(0).simd(simd.f64x2Splat).set('a0').f64(0).simd(simd.f64x2Splat).set('a1').f64(0).simd(simd.f64x2Splat).set('a2');
      b.forRange('k', (s) => s.i32(0), 'n', () => {
        b.get('wi').mem(op.f64Load, 3).simd(simd.f64x2Splat).set('w');
        for (const [a, at] of [['a0', 0], ['a1', 16], ['a2', 32]] as const) {
          b.get(a).get('o').simdMem(simd.load, 3, at).get('w').simd(simd.f64x2Mul).simd(simd.f64x2Add).set(a);
        }
        b.addTo('o', (s) => s.i32(48)).addTo('wi', (s) => s.i32(8));
      });
      // Channel c of output x goes to float c * size + x of the row (planar rows: see vpass).
      for (const [a, c] of [['a0', 0], ['a1', 1], ['a2', 2]] as const) {
        b.get('mx').get('plane').i32(c).ops(op.i32Mul, op.i32Add).get(a).simd(simd.f64x2ExtractLane).ops(0, op.f32DemoteF64).mem(op.f32Store, 2);
        b.get('mx').get('plane').i32(c).ops(op.i32Mul, op.i32Add).get('midRow').ops(op.i32Add).get(a).simd(simd.f64x2ExtractLane).ops(1, op.f32DemoteF64).mem(op.f32Store, 2);
      }
      b.addTo('mx', (s) => s.i32(4));
    });
  });
  return b;
}

const V_PARAMS = ['mid', 'midRow', 'ys', 'yn', 'yw', 'ytBytes', 'size', 'out', 'acc'] as const;

/**
 * vpass: the float32 rows at `mid` (`midRow` bytes each) to `size` rows, as CHW bytes at `out`.
 * Output y reads yn[y] rows from byte ys[y] of mid, with float64 weights at yw + y * ytBytes.
 * Every value of a row has the same weights, so the row is summed two values at a time (f64x2 lanes)
 * into `acc` (3 * size + 1 float64: an odd count reads one value past the row, into a lane never used);
 * then the values are rounded to bytes, two at a time; the rows are planar (hpass), so each channel's
 * values land in a run of their plane.
 */
function vpass(): Body {
  const b = new Body(V_PARAMS).locals(I32, 'y', 'first', 'n', 'wo', 'o', 'plane', 'pairs', 'q', 'x', 'a', 'k', 'c', 'three', 'last').locals(V128, 'w', 'v');
  // acc pair q (as float32 values in float64) = f32(acc[q] + promote(mid pair q) * w), or without acc[q] on the first tap
  const sweep = (firstTap: boolean): void => {
    b.forRange('q', (s) => s.i32(0), 'pairs', () => {
      b.get('acc').get('q').i32(4).ops(op.i32Shl, op.i32Add);
      if (!firstTap) b.get('acc').get('q').i32(4).ops(op.i32Shl, op.i32Add).simdMem(simd.load, 3);
      b.get('first').get('q').i32(3).ops(op.i32Shl, op.i32Add).simdMem(simd.load64Zero, 3).simd(simd.f64x2PromoteLow).get('w').simd(simd.f64x2Mul);
      if (!firstTap) b.simd(simd.f64x2Add);
      b.simd(simd.f32x4DemoteZero).simd(simd.f64x2PromoteLow).simdMem(simd.store, 3);
    });
  };
  // Output values x, x+1 of channel c: acc float64 c * size + x (two at once), * 255 + 0.5, clamped to
  // [0, 255], truncated; the bytes go to plane c, row y. An odd last x is done alone.
  const round2 = (): void => {
    b.get('a').simdMem(simd.load, 3).f64(255).simd(simd.f64x2Splat).simd(simd.f64x2Mul).f64(0.5).simd(simd.f64x2Splat).simd(simd.f64x2Add);
    b.f64(0).simd(simd.f64x2Splat).simd(simd.f64x2Max).f64(255).simd(simd.f64x2Splat).simd(simd.f64x2Min).simd(simd.i32x4TruncSatF64x2UZero).set('v');
    b.get('o').get('v').simd(simd.i32x4ExtractLane).ops(0).mem(op.i32Store8, 0, 0);
    b.get('o').get('v').simd(simd.i32x4ExtractLane).ops(1).mem(op.i32Store8, 0, 1);
  };
  const round1 = (): void => {
    b.get('o').get('a').mem(op.f64Load, 3).f64(255).ops(op.f64Mul).f64(0.5).ops(op.f64Add).f64(0).ops(op.f64Max).f64(255).ops(op.f64Min, op.i32TruncF64U).mem(op.i32Store8, 0);
  };
  b.get('size').get('size').ops(op.i32Mul).set('plane');
  b.i32(3).set('three');
  b.get('size').i32(3).ops(op.i32Mul).i32(1).ops(op.i32Add).i32(1).ops(op.i32ShrU).set('pairs');
  b.forRange('y', (s) => s.i32(0), 'size', () => {
    b.get('mid').get('ys').get('y').i32(2).ops(op.i32Shl, op.i32Add).mem(op.i32Load, 2).ops(op.i32Add).set('first');
    b.get('yn').get('y').i32(2).ops(op.i32Shl, op.i32Add).mem(op.i32Load, 2).set('n');
    b.get('yw').get('y').get('ytBytes').ops(op.i32Mul, op.i32Add).set('wo');
    b.get('wo').mem(op.f64Load, 3).simd(simd.f64x2Splat).set('w');
    sweep(true);
    b.forRange('k', (s) => s.i32(1), 'n', () => {
      b.addTo('first', (s) => s.get('midRow'));
      b.get('wo').get('k').i32(3).ops(op.i32Shl, op.i32Add).mem(op.f64Load, 3).simd(simd.f64x2Splat).set('w');
      sweep(false);
    });
    b.get('size').i32(1).ops(op.i32Sub).set('last');
    b.forRange('c', (s) => s.i32(0), 'three', () => {
      b.get('out').get('c').get('plane').ops(op.i32Mul, op.i32Add).get('y').get('size').ops(op.i32Mul, op.i32Add).set('o');
      b.get('acc').get('c').get('size').ops(op.i32Mul).i32(3).ops(op.i32Shl, op.i32Add).set('a');
      b.i32(0).set('x');
      b.ops(op.block, 0x40, op.loop, 0x40);
      b.get('x').get('last').ops(op.i32GeS, op.brIf, 1);
      round2();
      b.addTo('o', (s) => s.i32(2)).addTo('a', (s) => s.i32(16)).addTo('x', (s) => s.i32(2));
      b.ops(op.br, 0, op.end, op.end);
      // x is size - 1 (odd size: one left) or size (none left)
      b.get('x').get('size').ops(op.i32LtS, op.if, 0x40);
      round1();
      b.ops(op.end);
    });
  });
  return b;
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(s: string): number[] {
  const b = [...Buffer.from(s, 'utf8')];
  return [...uleb(b.length), ...b];
}

/** The module's bytes: memory "mem" (exported, grown by the caller), functions "hpass" and "vpass". */
export function resizeModuleBytes(): Uint8Array {
  const funcType = (params: number): number[] => [0x60, ...uleb(params), ...Array<number>(params).fill(I32), 0];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([funcType(H_PARAMS.length), funcType(V_PARAMS.length)])),
    ...section(3, vec([[0], [1]])),
    ...section(5, vec([[0x00, 1]])), // one memory, at least one page
    ...section(7, vec([[...name('mem'), 0x02, 0], [...name('hpass'), 0x00, 0], [...name('vpass'), 0x00, 1]])),
    ...section(10, vec([hpass().encode(), vpass().encode()])),
  ];
  return new Uint8Array(bytes);
}

// ---------------------------------------------------------------------------------------------
// The driver: lays the image, weights and buffers out in the module's memory and runs the passes.

/** One axis of the resize as image.ts trims it: first tap, tap count, float64 weights (stride `taps`). */
export interface WasmAxis {
  start: Int32Array;
  count: Int32Array;
  taps: number;
  w: Float64Array;
}

// The few WebAssembly types used here (the project's TypeScript lib has no WebAssembly declarations).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface Instance {
  mem: WasmMemory;
  hpass: (...a: number[]) => void;
  vpass: (...a: number[]) => void;
}

let inst: Instance | null = null;
const U_BYTES = 256 * 8;

function instance(unit: Float64Array): Instance {
  if (inst) return inst;
  const m = new wasm.Instance(new wasm.Module(resizeModuleBytes())).exports as Instance;
  new Float64Array(m.mem.buffer, 0, 256).set(unit);
  inst = m;
  return m;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/**
 * toCHWBytes' passes over rows of `d` (HWC bytes, `stride` per row, the region starting at byte `base`,
 * `w` pixels wide), into `out` as CHW bytes: the same bytes as the JavaScript passes.
 */
export function resizeWasm(d: Uint8Array, base: number, stride: number, w: number, ax: WasmAxis, ay: WasmAxis, size: number, unit: Float64Array, out: Uint8Array): void {
  const m = instance(unit);
  const y0 = ay.start[0];
  const y1 = ay.start[size - 1] + ay.count[size - 1];
  const rows = y1 - y0;
  const rowBytes = 3 * w;
  const midRow = 12 * size;
  // Layout: U | xs xn xw | ys yn yw | image rows y0..y1 (+1) | mid (+1 row) | acc | out | pair
  const xs = U_BYTES;
  const xn = xs + 4 * size;
  const xw = align8(xn + 4 * size);
  const ys = xw + 8 * size * ax.taps;
  const yn = ys + 4 * size;
  const yw = align8(yn + 4 * size);
  const img = yw + 8 * size * ay.taps;
  // hpass's second lane may read one row past the image and write one past mid's rows (odd counts);
  // vpass may read one float32 past mid's last row.
  const mid = align8(img + (rows + 1) * rowBytes);
  const acc = align8(mid + (rows + 1) * midRow + 8);
  const outAt = acc + 8 * (3 * size + 1);
  const pair = (outAt + 3 * size * size + 15) & ~15;
  const need = pair + 16 * rowBytes;
  if (m.mem.buffer.byteLength < need) m.mem.grow(Math.ceil((need - m.mem.buffer.byteLength) / 65536));
  const buf = m.mem.buffer;
  const i32 = new Int32Array(buf);
  for (let x = 0; x < size; x++) {
    i32[(xs >> 2) + x] = 3 * ax.start[x];
    i32[(xn >> 2) + x] = ax.count[x];
    i32[(ys >> 2) + x] = (ay.start[x] - y0) * midRow;
    i32[(yn >> 2) + x] = ay.count[x];
  }
  new Float64Array(buf, xw, size * ax.taps).set(ax.w.subarray(0, size * ax.taps));
  new Float64Array(buf, yw, size * ay.taps).set(ay.w.subarray(0, size * ay.taps));
  const u8 = new Uint8Array(buf);
  if (stride === rowBytes) u8.set(d.subarray(base + y0 * stride, base + y1 * stride), img);
  else for (let y = y0; y < y1; y++) u8.set(d.subarray(base + y * stride, base + y * stride + rowBytes), img + (y - y0) * rowBytes);
  m.hpass(img, rowBytes, rows, xs, xn, xw, 8 * ax.taps, size, mid, 0, pair);
  m.vpass(mid, midRow, ys, yn, yw, 8 * ay.taps, size, outAt, acc);
  out.set(u8.subarray(outAt, outAt + 3 * size * size));
}

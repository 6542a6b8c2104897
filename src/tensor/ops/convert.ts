// Bytes to the device, floats made there: uploads an image batch as uint8 (a quarter of the float
// bytes) and converts, normalises and flips it with shaders/convert.ts.
import { convertBytesKernel, convertUnormKernel, convertWordRunsKernel, convertWordsKernel, CONVERT_UNIFORM, CONVERT_WG } from '../../shaders/convert.js';
import { gridFor, type Kernel } from '../../shaders/kernel.js';
import { queue } from '../queue.js';
import { onDeviceClose } from '../device.js';
import { cachedKernel, log2Class, plan, registerCandidates, registerFamily } from '../plan.js';

/**
 * Planner family 'convert': 'element' (a float per thread, any side), 'word' (four bytes of a row per
 * thread, side % 4 == 0), 'words:k' (k words of a row per thread, side % 4k == 0), all through the
 * byte -> float table; and 'unorm:g' (g groups of 16 bytes of a row per thread, side % 16g == 0, no
 * table), which suits only the plain byte / 255 table on an adapter whose self-check passed for the
 * side (`exact` below: see unitConvertVerdict). Static rule: 'unorm:2' where it suits, else the widest
 * of 'unorm:1', 'words:4', 'word', 'element' that fits, on every adapter (fewer, fatter threads and
 * 16-byte stores; all give the same bits, tests/data/convert.test.ts). Older variants stay registered,
 * so a run that recorded them resumes with them.
 */
interface ConvertGeom {
  n: number;
  size: number;
  /** the table is byte / 255 and the 'unorm' kernels passed their self-check for this side */
  exact?: boolean;
}
registerFamily<ConvertGeom>({
  family: 'convert',
  about: 'byte batches to normalised, flipped floats: a float, four bytes or 16 bytes of a row per thread (side % 4 or 16 == 0)',
  // The class says which variants suit (the side's multiple of 4, 16, 32, and whether the table-free
  // form is exact here), so no plan is reused for a side or table it does not fit.
  shapeClass: (g) => `2^${log2Class(g.n * 3 * g.size * g.size)}${[32, 16, 4].map((m) => (g.size % m === 0 ? ` row${m}` : '')).find(Boolean) ?? ''}${g.exact ? ' unit' : ''}`,
  defaultRule: (_g, _dev, cands) => ['unorm:2', 'unorm:1', 'words:4'].map((id) => cands.find((c) => c.id === id)).find(Boolean) ?? cands.find((c) => c.variant === 'word') ?? cands[0],
});
/** Tiles of the 'unorm' variant: groups of 16 bytes per thread. */
const UNORM_TILES = [1, 2, 4] as const;
registerCandidates<ConvertGeom>('convert', [
  { variant: 'element' },
  { variant: 'word', suits: (g) => g.size % 4 === 0 },
  ...[4, 8].map((k) => ({ variant: 'words', tile: String(k), params: { k }, suits: (g: ConvertGeom) => g.size % (4 * k) === 0 })),
  ...UNORM_TILES.map((k) => ({ variant: 'unorm', tile: String(k), params: { g: k }, suits: (g: ConvertGeom) => g.exact === true && g.size % (16 * k) === 0 })),
]);
import { empty, fromArray, tidy, type Tensor } from '../tensor.js';
import { uploadBytes } from './convert-upload.js';

/**
 * NCHW floats [n, 3, size, size] from CHW bytes per image: out = table[c * 256 + byte], with image k's
 * columns mirrored where flips[k] is non-zero. `bytes` holds at least n*3*size*size bytes.
 */
export function imageBytesToFloat(bytes: Uint8Array, flips: ArrayLike<number>, table: Float32Array, n: number, size: number): Tensor {
  const per = 3 * size * size;
  const total = n * per;
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(size) || size < 1) throw new Error(`imageBytesToFloat: bad batch ${n}x3x${size}x${size}`);
  if (bytes.length < total) throw new Error(`imageBytesToFloat: ${bytes.length} bytes, a ${n}x3x${size}x${size} batch needs ${total}`);
  if (flips.length < n) throw new Error(`imageBytesToFloat: ${flips.length} flips for ${n} images`);
  if (table.length !== 768) throw new Error(`imageBytesToFloat: the table has ${table.length} values, expected 3 x 256`);
  return tidy(() => {
    const w = uploadBytes(bytes, total);
    const f = fromArray(Uint32Array.from({ length: n }, (_, i) => (flips[i] ? 1 : 0)), [n], 'u32');
    return convertOnDevice(w, f, fromArray(table, [768]), n, size, isUnitTable(table));
  });
}

/**
 * The device half of imageBytesToFloat: `words` (u32) already holds the CHW bytes, `flips` (u32) a
 * flag per image, `table` the 768 floats. bench/loader.ts times it apart from the upload.
 */
export function convertOnDevice(words: Tensor, flips: Tensor, table: Tensor, n: number, size: number, unit = false): Tensor {
  const total = n * 3 * size * size;
  if (words.size * 4 < total || flips.size < n || table.size !== 768) throw new Error(`convertOnDevice: inputs too small for a ${n}x3x${size}x${size} batch`);
  const exact = unit && size % 16 === 0 && unitConvertVerdict(size) === true;
  const pl = plan<ConvertGeom>('convert', { n, size, exact });
  const { kernel, items, perThread } = launchOf(pl.variant, Number(pl.params.k ?? pl.params.g ?? 0), size, total);
  const out = empty([n, 3, size, size]);
  const p = CONVERT_UNIFORM.pack({ n: items });
  const tag = () => ({ op: 'convert.bytes', variant: pl.id, shape: `${n}x3x${size}x${size}`, flops: 0 });
  queue.dispatch(kernel, [{ buffer: words.buf }, { buffer: flips.buf }, { buffer: table.buf }, { buffer: out.buf }], p, gridFor(items / perThread, CONVERT_WG), tag);
  return out;
}

/** A variant's kernel, its item count (the uniform `n`) and items per thread, for a batch of `total` bytes. */
function launchOf(variant: string, tile: number, size: number, total: number): { kernel: Kernel; items: number; perThread: number } {
  switch (variant) {
    case 'unorm':
      return { kernel: cachedKernel(`convert_bytes_unorm|${size}|${tile}`, () => convertUnormKernel(size, tile)), items: total / 16, perThread: tile };
    case 'words':
      return { kernel: cachedKernel(`convert_bytes_words|${size}|${tile}`, () => convertWordRunsKernel(size, tile)), items: total / 4, perThread: tile };
    case 'word':
      return { kernel: cachedKernel(`convert_bytes_word|${size}`, () => convertWordsKernel(size)), items: total / 4, perThread: 1 };
    default:
      return { kernel: cachedKernel(`convert_bytes|${size}`, () => convertBytesKernel(size)), items: total, perThread: 1 };
  }
}

// ---------------------------------------------------------------------------------------------
// The table-free form's self-check
//
// WGSL lets unpack4x8unorm round within a few ulps, so the 'unorm' kernels are used only where they
// give exactly the table's floats. The check is exhaustive and runs the very kernels (same WGSL, same
// pipelines) on this adapter: a probe batch in which every channel plane holds all 256 byte values,
// once unflipped and once flipped, converted by each 'unorm' tile that suits the side and compared
// bit for bit with the host twin through the table. One verdict per side per process; until it is in,
// the table kernels run (same bits either way), so nothing waits for it.

/** The plain byte / 255 table (no normalisation): the only one the 'unorm' kernels compute. */
function unitTable(): Float32Array {
  return Float32Array.from({ length: 768 }, (_, i) => Math.fround((i % 256) / 255));
}
const UNIT = unitTable();
const unitTables = new WeakMap<Float32Array, boolean>();

/** Whether `table` is byte / 255 in every channel, bit for bit (remembered per array). */
export function isUnitTable(table: Float32Array): boolean {
  let v = unitTables.get(table);
  if (v === undefined) {
    v = table.length === 768 && table.every((x, i) => Object.is(x, UNIT[i]));
    unitTables.set(table, v);
  }
  return v;
}

/** The probe batch of side `size`: 2m images, m just enough for 256 values per plane; the second half flipped. */
function probeBatch(size: number): { data: Uint8Array; flips: Uint32Array; n: number } {
  const plane = size * size;
  const m = Math.ceil(256 / plane);
  const n = 2 * m;
  const data = new Uint8Array(n * 3 * plane);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      // Channel c starts its run at 85c so the planes are not copies of each other.
      for (let p = 0; p < plane; p++) data[(i * 3 + c) * plane + p] = ((i % m) * plane + p + 85 * c) & 255;
    }
  }
  return { data, flips: Uint32Array.from({ length: n }, (_, i) => (i >= m ? 1 : 0)), n };
}

/**
 * Runs `kernel` (a 'unorm' kernel of tile g for side `size`, or any kernel with its bindings) on the
 * probe batch and compares every float bit for bit with byte / 255 read through the flips: true when
 * all match. Exported for the test that feeds it a kernel that rounds differently.
 */
export async function checkUnormKernel(kernel: Kernel, size: number, g: number): Promise<boolean> {
  await queue.compile(kernel);
  const { data, flips, n } = probeBatch(size);
  const total = data.length;
  const out = tidy(() => {
    const w = fromArray(new Uint32Array(data.buffer), [total / 4], 'u32');
    const f = fromArray(flips, [n], 'u32');
    // Every float starts as a NaN sentinel: a pooled buffer may still hold the right floats from an
    // earlier run of the probe, which a kernel that skipped some would then seem to have written.
    const out = fromArray(new Float32Array(new Uint32Array(total).fill(0xffffffff).buffer), [n, 3, size, size]);
    queue.dispatch(kernel, [{ buffer: w.buf }, { buffer: f.buf }, { buffer: fromArray(UNIT, [768]).buf }, { buffer: out.buf }], CONVERT_UNIFORM.pack({ n: total / 16 }), gridFor(total / 16 / g, CONVERT_WG));
    return out;
  });
  const got = (await out.toArray().finally(() => out.dispose())) as Float32Array;
  const want = new Uint32Array(UNIT.buffer);
  const bits = new Uint32Array(got.buffer, got.byteOffset, got.length);
  for (let i = 0; i < total; i++) {
    const x = i % size;
    const s = flips[Math.floor(i / (3 * size * size))] ? i - x + (size - 1 - x) : i;
    if (bits[i] !== want[data[s]]) return false;
  }
  return true;
}

interface Verdict {
  done: boolean;
  ok: boolean;
  /** a GPU error met while checking (not the check's own kernel failing to compile): raised, not kept */
  error?: unknown;
  promise: Promise<boolean>;
}
const verdicts = new Map<number, Verdict>();

/**
 * Whether the 'unorm' kernels are exact for side `size` on this adapter: true or false once checked,
 * null while the check runs (it starts on the first call; the table kernels serve meanwhile). A GPU
 * error the check's readback met (it may belong to other queued work) is thrown here, once.
 */
export function unitConvertVerdict(size: number): boolean | null {
  const v = verdicts.get(size) ?? startCheck(size);
  if (v.error !== undefined) {
    const e = v.error;
    v.error = undefined;
    throw e;
  }
  return v.done ? v.ok : null;
}

/** Waits for side `size`'s verdict (starting the check if need be): the tests and bench/loader.ts use it. */
export function unitConvertReady(size: number): Promise<boolean> {
  return (verdicts.get(size) ?? startCheck(size)).promise;
}

/** Whether every 'unorm' tile that suits side `size` gives the table's bits; false where one cannot compile. */
async function checkTiles(size: number): Promise<boolean> {
  const tiles = UNORM_TILES.filter((g) => size % (16 * g) === 0);
  if (tiles.length === 0) return false;
  for (const g of tiles) {
    const k = cachedKernel(`convert_bytes_unorm|${size}|${g}`, () => convertUnormKernel(size, g));
    try {
      await queue.compile(k);
    } catch (e) {
      process.emitWarning(`the table-free convert kernel does not compile here (${(e as Error).message.split('\n')[0]}); the table kernels are used`);
      return false;
    }
    if (!(await checkUnormKernel(k, size, g))) return false;
  }
  return true;
}

function startCheck(size: number): Verdict {
  const v: Verdict = { done: false, ok: false, promise: Promise.resolve(false) };
  verdicts.set(size, v);
  v.promise = checkTiles(size).then(
    (ok) => ok,
    (e: unknown) => {
      v.error = e;
      return false;
    },
  ).then((ok) => {
    v.done = true;
    v.ok = ok;
    return ok;
  });
  return v;
}

/** Forgets the verdicts (the device closed: a new one is checked afresh). */
export function resetUnitConvertVerdicts(): void {
  verdicts.clear();
}

onDeviceClose(resetUnitConvertVerdicts);

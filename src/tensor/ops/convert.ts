// Bytes to the device, floats made there: uploads an image batch as uint8 (a quarter of the float
// bytes) and converts, normalises and flips it with shaders/convert.ts.
import { convertBytesKernel, convertWordRunsKernel, convertWordsKernel, CONVERT_UNIFORM, CONVERT_WG } from '../../shaders/convert.js';
import { gridFor } from '../../shaders/kernel.js';
import { queue } from '../queue.js';
import { cachedKernel, log2Class, plan, registerCandidates, registerFamily } from '../plan.js';

/**
 * Planner family 'convert': 'element' (a float per thread, any side), 'word' (four bytes of a row per
 * thread, side % 4 == 0) or 'words:k' (k words of a row per thread, side % 4k == 0). Static rule: the
 * widest of 'words:4', 'word', 'element' that fits, on every adapter (fewer, fatter threads and 16-byte
 * stores; all give the same bits, tests/data/convert.test.ts).
 */
interface ConvertGeom {
  n: number;
  size: number;
}
registerFamily<ConvertGeom>({
  family: 'convert',
  about: 'byte batches to normalised, flipped floats: a float or four bytes of a row per thread (side % 4 == 0)',
  // The class says which variants suit (the side's multiple of 4, 16, 32), so no plan is reused for a side it does not fit.
  shapeClass: (g) => `2^${log2Class(g.n * 3 * g.size * g.size)}${[32, 16, 4].map((m) => (g.size % m === 0 ? ` row${m}` : '')).find(Boolean) ?? ''}`,
  defaultRule: (_g, _dev, cands) => cands.find((c) => c.id === 'words:4') ?? cands.find((c) => c.variant === 'word') ?? cands[0],
});
registerCandidates<ConvertGeom>('convert', [
  { variant: 'element' },
  { variant: 'word', suits: (g) => g.size % 4 === 0 },
  ...[4, 8].map((k) => ({ variant: 'words', tile: String(k), params: { k }, suits: (g: ConvertGeom) => g.size % (4 * k) === 0 })),
]);
import { empty, fromArray, tidy, type Tensor } from '../tensor.js';

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
  const words = Math.ceil(total / 4);
  // Whole aligned words are uploaded in place; anything else is copied once into a padded buffer.
  const aligned = bytes.byteOffset % 4 === 0 && bytes.length >= words * 4;
  const src = aligned ? new Uint32Array(bytes.buffer, bytes.byteOffset, words) : (() => {
    const pad = new Uint8Array(words * 4);
    pad.set(bytes.subarray(0, total));
    return new Uint32Array(pad.buffer);
  })();
  return tidy(() => {
    const w = fromArray(src, [words], 'u32');
    const f = fromArray(Uint32Array.from({ length: n }, (_, i) => (flips[i] ? 1 : 0)), [n], 'u32');
    return convertOnDevice(w, f, fromArray(table, [768]), n, size);
  });
}

/**
 * The device half of imageBytesToFloat: `words` (u32) already holds the CHW bytes, `flips` (u32) a
 * flag per image, `table` the 768 floats. bench/loader.ts times it apart from the upload.
 */
export function convertOnDevice(words: Tensor, flips: Tensor, table: Tensor, n: number, size: number): Tensor {
  const total = n * 3 * size * size;
  if (words.size * 4 < total || flips.size < n || table.size !== 768) throw new Error(`convertOnDevice: inputs too small for a ${n}x3x${size}x${size} batch`);
  const pl = plan<ConvertGeom>('convert', { n, size });
  // Words per thread (0: a float per thread).
  const run = pl.variant === 'words' ? Number(pl.params.k) : pl.variant === 'word' ? 1 : 0;
  const k = run > 1 ? cachedKernel(`convert_bytes_words|${size}|${run}`, () => convertWordRunsKernel(size, run))
    : run === 1 ? cachedKernel(`convert_bytes_word|${size}`, () => convertWordsKernel(size))
      : cachedKernel(`convert_bytes|${size}`, () => convertBytesKernel(size));
  const out = empty([n, 3, size, size]);
  const items = run ? total / 4 : total;
  const p = CONVERT_UNIFORM.pack({ n: items });
  const tag = () => ({ op: 'convert.bytes', variant: pl.id, shape: `${n}x3x${size}x${size}`, flops: 0 });
  queue.dispatch(k, [{ buffer: words.buf }, { buffer: flips.buf }, { buffer: table.buf }, { buffer: out.buf }], p, gridFor(items / Math.max(1, run), CONVERT_WG), tag);
  return out;
}

// The libjpeg-turbo fast path (src/data/jpeg-turbo.ts): every JPEG it takes decodes to sharp's exact
// bytes (chroma subsamplings, grayscale, progressive, arithmetic coding, restart intervals, odd sizes,
// qualities); files it must leave to sharp (ICC profile, CMYK, PNG) go there; a damaged JPEG is refused
// or decoded exactly as sharp refuses or decodes it, with the one-line error naming the file; and without
// the library everything still decodes through sharp, on the main thread and in the decode pool.
//
// The JPEGs come from sharp and from libjpeg-turbo's own compressor (called through koffi here): sharp
// cannot write 4:2:2, 4:4:0, 4:1:1, restart markers or arithmetic coding.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import koffi from 'koffi';
import sharp from 'sharp';
import { decodeImage, decodeImageBuffer, decodeToBytes, decodeWithSharp, toCHWBytes, UnreadableImageError } from '../../src/data/image.js';
import { hasIccProfile, isJpeg, loadTurboJpeg, resetTurboJpeg, turboJpeg, type TurboJpeg } from '../../src/data/jpeg-turbo.js';
import { DecodePool } from '../../src/data/decode-pool.js';
import { budget } from '../budget.js';

const RUNS = Number(process.env.TICKETLAB_FUZZ_RUNS ?? 60);

let dir: string;
let turbo: TurboJpeg;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-jpeg-turbo-'));
  const r = await loadTurboJpeg();
  // scripts/setup.sh installs the library; without it these tests would compare sharp with itself.
  if (!r.ok) throw new Error(`libturbojpeg is needed for these tests (apt-get install libturbojpeg0): ${r.why}`);
  turbo = r.turbo;
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  delete process.env.TICKETLAB_TURBOJPEG;
  resetTurboJpeg();
});

/** Photo-like test pixels: smooth gradients, edges and noise (a flat image would hide upsampling differences). */
function pixels(w: number, h: number, seed: number): Buffer {
  const px = Buffer.alloc(w * h * 3);
  let s = (seed * 2654435761 + 1) >>> 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const o = 3 * (y * w + x);
      px[o] = (128 + 100 * Math.sin(x / 5 + seed) + (s >>> 27)) & 255;
      px[o + 1] = (x * 7 + y * 3 + ((s >>> 20) & 31)) & 255;
      px[o + 2] = ((x ^ y) * 5 + seed * 11) & 255;
    }
  }
  return px;
}

// libjpeg-turbo's compressor, for the layouts sharp cannot write. TJ_RESTART (read by tjCompress2) asks
// for restart markers every N MCU rows ("NB": every N MCUs); TJ_ARITHMETIC for arithmetic coding.
const TJSAMP = { '444': 0, '422': 1, '420': 2, gray: 3, '440': 4, '411': 5 } as const;
const TJFLAG_NOREALLOC = 1024;
const TJFLAG_PROGRESSIVE = 16384;
let compressor: ((src: Buffer, w: number, h: number, samp: number, q: number, flags: number) => Buffer) | null = null;
function tjCompress(src: Buffer, w: number, h: number, samp: keyof typeof TJSAMP, q: number, o: { progressive?: boolean; restart?: string; arithmetic?: boolean } = {}): Buffer {
  if (!compressor) {
    const lib = koffi.load('libturbojpeg.so.0');
    const init = lib.func('void* tjInitCompress()');
    const bufSize = lib.func('unsigned long tjBufSize(int w, int h, int ss)');
    const comp = lib.func('int tjCompress2(void* h, const uint8_t* src, int w, int pitch, int hh, int pf, uint64_t* jb, _Inout_ unsigned long* sz, int ss, int q, int flags)');
    const destroy = lib.func('int tjDestroy(void* h)');
    // A fresh handle per image: a reused one keeps settings (arithmetic coding) from the image before.
    compressor = (s, cw, ch, ss, cq, flags) => {
      const handle = init();
      const cap = Number(bufSize(cw, ch, ss));
      const dst = Buffer.alloc(cap);
      const size = [cap];
      const rc = comp(handle, s, cw, 0, ch, 0, new BigUint64Array([koffi.address(dst)]), size, ss, cq, flags | TJFLAG_NOREALLOC);
      destroy(handle);
      if (rc !== 0) throw new Error('tjCompress2 failed');
      return dst.subarray(0, size[0]);
    };
  }
  const env = { TJ_RESTART: o.restart, TJ_ARITHMETIC: o.arithmetic ? '1' : undefined };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return compressor(src, w, h, TJSAMP[samp], q, o.progressive ? TJFLAG_PROGRESSIVE : 0);
  } finally {
    delete process.env.TJ_RESTART;
    delete process.env.TJ_ARITHMETIC;
  }
}

/** Whether a JPEG has a marker (0xFF, code) before its first scan's data ends: DRI is FFDD, SOF9 (arithmetic) FFC9. */
function hasMarker(jpg: Buffer, code: number): boolean {
  return jpg.indexOf(Buffer.from([0xff, code])) >= 0;
}

/**
 * The JPEG with an EXIF APP1 segment holding only an orientation tag, right after SOI (sharp's
 * withMetadata would add an ICC profile too, which sends the file to sharp).
 */
function withOrientation(jpg: Buffer, orientation: number): Buffer {
  const tiff = Buffer.alloc(26);
  tiff.write('II*\0', 0, 'latin1');
  tiff.writeUInt32LE(8, 4); // first IFD
  tiff.writeUInt16LE(1, 8); // one entry
  tiff.writeUInt16LE(0x0112, 10); // Orientation
  tiff.writeUInt16LE(3, 12); // SHORT
  tiff.writeUInt32LE(1, 14);
  tiff.writeUInt16LE(orientation, 18);
  tiff.writeUInt32LE(0, 22); // no next IFD
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const seg = Buffer.alloc(4);
  seg.writeUInt16BE(0xffe1, 0);
  seg.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([jpg.subarray(0, 2), seg, body, jpg.subarray(2)]);
}

interface Case {
  name: string;
  jpg: () => Promise<Buffer>;
  marker?: number;
}

const W = 37, H = 53;
const cases: Case[] = [
  { name: 'sharp 4:2:0 q50', jpg: () => sharp(pixels(W, H, 1), { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 50 }).toBuffer() },
  { name: 'sharp 4:4:4 q95', jpg: () => sharp(pixels(W, H, 2), { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer() },
  { name: 'sharp progressive 4:2:0 q90, 320x320', jpg: () => sharp(pixels(320, 320, 3), { raw: { width: 320, height: 320, channels: 3 } }).jpeg({ quality: 90, progressive: true }).toBuffer() },
  { name: 'sharp grayscale', jpg: () => sharp(pixels(W, H, 4), { raw: { width: W, height: H, channels: 3 } }).toColourspace('b-w').jpeg({ quality: 80 }).toBuffer() },
  { name: 'sharp mozjpeg (trellis, optimised scans)', jpg: () => sharp(pixels(64, 48, 5), { raw: { width: 64, height: 48, channels: 3 } }).jpeg({ quality: 75, mozjpeg: true }).toBuffer() },
  // No EXIF auto-rotation on either path (PIL and torchvision do not rotate): the stored pixels, as stored.
  { name: 'tj 4:2:0 with EXIF orientation 6 (not applied)', jpg: async () => withOrientation(tjCompress(pixels(W, H, 15), W, H, '420', 90), 6), marker: 0xe1 },
  { name: 'tj 4:2:2 q95', jpg: async () => tjCompress(pixels(W, H, 6), W, H, '422', 95) },
  { name: 'tj 4:4:0 q50', jpg: async () => tjCompress(pixels(W, H, 7), W, H, '440', 50) },
  { name: 'tj 4:1:1 q80', jpg: async () => tjCompress(pixels(W, H, 8), W, H, '411', 80) },
  { name: 'tj 4:4:4 1x1', jpg: async () => tjCompress(pixels(1, 1, 9), 1, 1, '444', 90) },
  { name: 'tj gray 17x3', jpg: async () => tjCompress(pixels(17, 3, 10), 17, 3, 'gray', 60) },
  { name: 'tj 4:2:0 restart every MCU row', jpg: async () => tjCompress(pixels(W, H, 11), W, H, '420', 85, { restart: '1' }), marker: 0xdd },
  { name: 'tj 4:2:2 restart every 3 MCUs, progressive', jpg: async () => tjCompress(pixels(W, H, 12), W, H, '422', 70, { restart: '3B', progressive: true }), marker: 0xdd },
  { name: 'tj 4:2:0 arithmetic coding', jpg: async () => tjCompress(pixels(W, H, 13), W, H, '420', 90, { arithmetic: true }), marker: 0xc9 },
  { name: 'tj 4:2:0 odd size 201x9 q95', jpg: async () => tjCompress(pixels(201, 9, 14), 201, 9, '420', 95) },
];

describe('the libjpeg-turbo fast path', () => {
  for (const c of cases) {
    it(`takes ${c.name} and gives sharp's bytes`, async () => {
      const jpg = await c.jpg();
      if (c.marker !== undefined) expect(hasMarker(jpg, c.marker), 'the encoder wrote the layout asked for').toBe(true);
      const h = turbo.header(jpg);
      expect(h, 'the fast path takes it').not.toBeNull();
      const out = new Uint8Array(h!.width * h!.height * 3);
      expect(turbo.decodeInto(jpg, h!, out)).toBe(true);
      const ref = await decodeWithSharp(jpg);
      expect([h!.width, h!.height]).toEqual([ref.width, ref.height]);
      const meta = await sharp(jpg).metadata();
      expect([ref.width, ref.height]).toEqual([meta.width, meta.height]);
      if (c.marker === 0xe1) expect(meta.orientation).toBe(6);
      expect(Buffer.from(out).equals(Buffer.from(ref.data))).toBe(true);
      const got = await decodeImageBuffer(jpg);
      expect(Buffer.from(got.data).equals(Buffer.from(ref.data))).toBe(true);
    }, budget(30_000));
  }

  it('leaves an ICC-tagged JPEG, a CMYK JPEG and a PNG to sharp, with sharp\'s bytes', async () => {
    const raw = { raw: { width: W, height: H, channels: 3 as const } };
    const icc = await sharp(pixels(W, H, 20), raw).withIccProfile('p3').jpeg().toBuffer();
    const cmyk = await sharp(pixels(W, H, 21), raw).toColourspace('cmyk').jpeg().toBuffer();
    const png = await sharp(pixels(W, H, 22), raw).png().toBuffer();
    expect(hasIccProfile(icc)).toBe(true);
    expect(isJpeg(png)).toBe(false);
    for (const [name, buf] of [['icc', icc], ['cmyk', cmyk], ['png', png]] as const) {
      expect(turbo.header(buf), name).toBeNull();
      const got = await decodeImageBuffer(buf, name);
      const ref = await decodeWithSharp(buf, name);
      expect(Buffer.from(got.data).equals(Buffer.from(ref.data)), name).toBe(true);
    }
    const plain = await sharp(pixels(W, H, 23), raw).jpeg().toBuffer();
    expect(hasIccProfile(plain)).toBe(false);
  }, budget(30_000));

  it('refuses an image above the pixel limit from its header, naming the file', async () => {
    const jpg = tjCompress(pixels(120, 100, 30), 120, 100, '420', 80);
    const f = path.join(dir, 'big.jpg');
    fs.writeFileSync(f, jpg);
    process.env.TICKETLAB_MAX_PIXELS = '10000';
    try {
      const err = await decodeImage(f).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(UnreadableImageError);
      expect((err as Error).message).toContain(f);
      expect((err as Error).message).toMatch(/120x100.*limit/);
    } finally {
      delete process.env.TICKETLAB_MAX_PIXELS;
    }
  });

  it('fails a truncated JPEG with a one-line error naming the file, as sharp does', async () => {
    const jpg = tjCompress(pixels(64, 64, 31), 64, 64, '420', 90);
    for (const frac of [0.3, 0.6, 0.95]) {
      const f = path.join(dir, `trunc-${frac}.jpg`);
      fs.writeFileSync(f, jpg.subarray(0, Math.floor(jpg.length * frac)));
      for (const run of [() => decodeImage(f), () => decodeToBytes(f, 16)]) {
        const err = await run().then(() => null, (e: unknown) => e);
        expect(err, f).toBeInstanceOf(UnreadableImageError);
        expect((err as Error).message).toContain(f);
        expect((err as Error).message.includes('\n')).toBe(false);
      }
    }
  });

  it('decodes a damaged JPEG exactly as sharp does: the same error or the same bytes (property)', async () => {
    const base = [
      tjCompress(pixels(40, 24, 40), 40, 24, '420', 85),
      tjCompress(pixels(40, 24, 41), 40, 24, '422', 85, { progressive: true }),
      tjCompress(pixels(40, 24, 42), 40, 24, '444', 85, { restart: '1' }),
    ];
    const outcome = async (f: () => Promise<{ data: Uint8Array }>): Promise<string> =>
      f().then((img) => `ok ${Buffer.from(img.data).toString('base64')}`, (e: unknown) => `error ${(e as Error).message}`);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: base.length - 1 }), fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), async (k, edits) => {
        const jpg = Buffer.from(base[k]);
        for (const [at, v] of edits) jpg[Math.min(jpg.length - 1, Math.floor(at * jpg.length))] = v;
        const got = await outcome(() => decodeImageBuffer(jpg, 'damaged.jpg'));
        const want = await outcome(() => decodeWithSharp(jpg, 'damaged.jpg'));
        expect(got).toBe(want);
        if (got.startsWith('error')) expect(got).toContain('damaged.jpg');
      }),
      { numRuns: RUNS },
    );
  }, budget(120_000));
});

describe('without libjpeg-turbo', () => {
  it('warns once and decodes through sharp, with the same bytes', async () => {
    const jpg = tjCompress(pixels(W, H, 50), W, H, '420', 90);
    const ref = await decodeWithSharp(jpg);
    process.env.TICKETLAB_TURBOJPEG = path.join(dir, 'no-such-libturbojpeg.so');
    resetTurboJpeg();
    const said: string[] = [];
    expect(await turboJpeg((m) => said.push(m))).toBeNull();
    expect(await turboJpeg((m) => said.push(m))).toBeNull();
    expect(said).toHaveLength(1);
    expect(said[0]).toContain('no-such-libturbojpeg.so');
    expect(said[0].includes('\n')).toBe(false);
    const got = await decodeImageBuffer(jpg);
    expect(Buffer.from(got.data).equals(Buffer.from(ref.data))).toBe(true);
  });

  it('TICKETLAB_TURBOJPEG=off turns the fast path off quietly', async () => {
    process.env.TICKETLAB_TURBOJPEG = 'off';
    resetTurboJpeg();
    const said: string[] = [];
    expect(await turboJpeg((m) => said.push(m))).toBeNull();
    expect(said).toEqual([]);
  });

  it('decode workers give the same bytes with and without it, and name a truncated file', async () => {
    const files = [0, 1, 2, 3].map((k) => {
      const f = path.join(dir, `pool-${k}.jpg`);
      fs.writeFileSync(f, tjCompress(pixels(50 + k, 40 + 3 * k, 60 + k), 50 + k, 40 + 3 * k, k % 2 ? '422' : '420', 88));
      return f;
    });
    const bad = path.join(dir, 'pool-bad.jpg');
    fs.writeFileSync(bad, fs.readFileSync(files[0]).subarray(0, 300));
    // The reference: sharp's decode, resized on this thread.
    const want = await Promise.all(files.map(async (f) => toCHWBytes(await decodeWithSharp(fs.readFileSync(f), f), 24)));
    for (const env of [undefined, path.join(dir, 'missing-lib.so')]) {
      if (env === undefined) delete process.env.TICKETLAB_TURBOJPEG;
      else process.env.TICKETLAB_TURBOJPEG = env;
      resetTurboJpeg();
      const pool = new DecodePool(2);
      try {
        const got = await Promise.all(files.map((f) => pool.decode(f, 24)));
        got.forEach((g, k) => expect(Buffer.from(g).equals(Buffer.from(want[k])), `${files[k]} (${env ?? 'with libturbojpeg'})`).toBe(true));
        const err = await pool.decode(bad, 24).then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(UnreadableImageError);
        expect((err as Error).message).toContain(bad);
        expect((err as Error).message.includes('\n')).toBe(false);
      } finally {
        await pool.close();
      }
    }
  }, budget(60_000));
});

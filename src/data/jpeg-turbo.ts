// JPEG decoding through the system's libjpeg-turbo (its TurboJPEG API), called over koffi's FFI.
//
// Why: a 320 px JPEG costs 1.5-1.9 ms through sharp (libvips' pipeline around the same libjpeg code)
// and about 0.4 ms here, which is what PIL costs; the first pass over a dataset is mostly JPEG decoding.
// The bytes are the same as sharp's and PIL's: accurate integer IDCT and fancy (smooth) chroma
// upsampling are libjpeg's defaults, which all three use (flags 0; TJFLAG_FASTDCT would differ by a few
// levels). koffi ships prebuilt binaries and needs no compiler.
//
// This module only answers "can the fast path take this file, and what are its pixels". Whatever it
// declines (not a JPEG, CMYK/YCCK, an embedded ICC profile that sharp would apply, any libjpeg warning
// or error) goes through sharp, so errors and unusual files keep sharp's behaviour and messages.
// Without the library, or with koffi missing, everything goes through sharp (one warning line).
//
// TICKETLAB_TURBOJPEG: unset = the platform's library name; `off` = always sharp, silently; anything
// else = the library file to load (a path that does not exist simulates a machine without it).
import { isMainThread } from 'node:worker_threads';

// turbojpeg.h (libjpeg-turbo 2.1; the values are unchanged in 3.x's compatibility API).
const TJPF_RGB = 0;
const TJCS_RGB = 0;
const TJCS_YCbCr = 1;
const TJCS_GRAY = 2;
/** TJFLAG_STOPONWARNING: a warning (truncated data, corrupt entropy stream) ends the decode with an error. */
const TJFLAG_STOPONWARNING = 8192;

/** Header fields of a JPEG the fast path can decode. */
export interface JpegHeader {
  width: number;
  height: number;
}

/** One thread's decompressor (a TurboJPEG handle is not safe to share across threads; each worker loads its own). */
export interface TurboJpeg {
  /** Size of a JPEG this decoder will decode to RGB exactly as sharp does; null: leave it to sharp. */
  header(buf: Uint8Array): JpegHeader | null;
  /** Decodes into `out` (at least width*height*3 bytes, RGB rows); false on any libjpeg warning or error. */
  decodeInto(buf: Uint8Array, h: JpegHeader, out: Uint8Array): boolean;
}

/** What the loader gets back: the library's functions, or why they are not available. */
export type TurboLoad = { ok: true; turbo: TurboJpeg } | { ok: false; why: string; quiet?: boolean };

/** SOI marker: every JPEG starts FF D8 FF. */
export function isJpeg(buf: Uint8Array): boolean {
  return buf.length > 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff;
}

const ICC_TAG = [0x49, 0x43, 0x43, 0x5f, 0x50, 0x52, 0x4f, 0x46, 0x49, 0x4c, 0x45, 0x00]; // "ICC_PROFILE\0"

/**
 * Whether the JPEG carries an ICC profile (APP2 "ICC_PROFILE"), scanning the marker segments before the
 * first scan. sharp converts such an image to sRGB through its profile; libjpeg returns the raw values,
 * so those files stay with sharp. A malformed segment list also answers true (sharp decides).
 */
export function hasIccProfile(buf: Uint8Array): boolean {
  let p = 2;
  while (p + 4 <= buf.length) {
    if (buf[p] !== 0xff) return true;
    const marker = buf[p + 1];
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return false; // start of scan / end of image
    if (marker >= 0xd0 && marker <= 0xd7) {
      p += 2;
      continue;
    }
    const len = (buf[p + 2] << 8) | buf[p + 3];
    if (len < 2) return true;
    if (marker === 0xe2 && len >= 2 + ICC_TAG.length && p + 4 + ICC_TAG.length <= buf.length) {
      let match = true;
      for (let k = 0; k < ICC_TAG.length && match; k++) match = buf[p + 4 + k] === ICC_TAG[k];
      if (match) return true;
    }
    p += 2 + len;
  }
  return true;
}

function defaultLibrary(): string {
  if (process.platform === 'darwin') return 'libturbojpeg.0.dylib';
  if (process.platform === 'win32') return 'turbojpeg.dll';
  return 'libturbojpeg.so.0';
}

type Koffi = typeof import('koffi');
type Fn = (...args: unknown[]) => unknown;

/** Loads koffi and the library and binds the three functions; never throws. */
export async function loadTurboJpeg(library = process.env.TICKETLAB_TURBOJPEG): Promise<TurboLoad> {
  if (library === 'off') return { ok: false, why: 'TICKETLAB_TURBOJPEG=off', quiet: true };
  let koffi: Koffi;
  try {
    const m = (await import('koffi')) as Koffi & { default?: Koffi };
    koffi = m.default ?? m;
  } catch (e) {
    return { ok: false, why: `the koffi package cannot be loaded (${firstLine(e)})` };
  }
  const name = library || defaultLibrary();
  try {
    const lib = koffi.load(name);
    const init = lib.func('void* tjInitDecompress()') as Fn;
    const hdr = lib.func('int tjDecompressHeader3(void* h, const uint8_t* buf, unsigned long size, _Out_ int* w, _Out_ int* hh, _Out_ int* ss, _Out_ int* cs)') as Fn;
    const dec = lib.func('int tjDecompress2(void* h, const uint8_t* buf, unsigned long size, uint8_t* dst, int w, int pitch, int hh, int pf, int flags)') as Fn;
    const handle = init();
    if (!handle) return { ok: false, why: `${name}: tjInitDecompress failed` };
    const w = new Int32Array(1), h = new Int32Array(1), ss = new Int32Array(1), cs = new Int32Array(1);
    const turbo: TurboJpeg = {
      header(buf) {
        if (!isJpeg(buf) || hasIccProfile(buf)) return null;
        if (hdr(handle, buf, buf.length, w, h, ss, cs) !== 0) return null;
        // RGB, YCbCr and grayscale decode to sharp's RGB; CMYK and YCCK need sharp's colour conversion.
        if (cs[0] !== TJCS_YCbCr && cs[0] !== TJCS_GRAY && cs[0] !== TJCS_RGB) return null;
        if (w[0] < 1 || h[0] < 1) return null;
        return { width: w[0], height: h[0] };
      },
      decodeInto(buf, hd, out) {
        if (out.length < hd.width * hd.height * 3) throw new Error(`decodeInto: ${out.length} bytes, needs ${hd.width * hd.height * 3}`);
        return dec(handle, buf, buf.length, out, hd.width, 0, hd.height, TJPF_RGB, TJFLAG_STOPONWARNING) === 0;
      },
    };
    return { ok: true, turbo };
  } catch (e) {
    return { ok: false, why: `${name} cannot be loaded (${firstLine(e)})` };
  }
}

function firstLine(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  return s.split('\n')[0].trim();
}

let loading: Promise<TurboJpeg | null> | null = null;
let loaded: TurboJpeg | null | undefined;
let warned = false;

/**
 * This thread's decoder, loaded on first use (null: decode with sharp). A failure to load is warned about
 * once per process, from the main thread (workers fail the same way and stay quiet).
 */
export function turboJpeg(warn: (m: string) => void = (m) => process.stderr.write(m + '\n')): Promise<TurboJpeg | null> {
  loading ??= loadTurboJpeg().then((r) => {
    if (!r.ok && !r.quiet && isMainThread && !warned) {
      warned = true;
      warn(`ticketlab: warning: JPEG decoding falls back to sharp (about 4x slower, same pixels): ${r.why}; install libturbojpeg0 (apt) to speed up the first pass`);
    }
    loaded = r.ok ? r.turbo : null;
    return loaded;
  });
  return loading;
}

/** The decoder if turboJpeg() has finished loading it, without waiting (undefined: not loaded yet). */
export function turboJpegNow(): TurboJpeg | null | undefined {
  return loaded;
}

/** Forgets the loaded decoder, so the next turboJpeg() reads TICKETLAB_TURBOJPEG again (tests). */
export function resetTurboJpeg(): void {
  loading = null;
  loaded = undefined;
  warned = false;
}

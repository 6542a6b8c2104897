// Worker thread of the decode pool (decode-pool.ts): decodes an image file and resizes it (or crops of
// it) to the training size as CHW bytes. sharp decodes on libvips' threads; the resize is our
// JavaScript, which is why it runs here and not on the main thread. The bytes are transferred, not copied.
import { parentPort } from 'node:worker_threads';
import { decodeBufferToBytes, readImageFileSync, UnreadableImageError, type BoxCrop } from './image.js';
import { turboJpeg } from './jpeg-turbo.js';
import { crc32 } from './crc32.js';

export interface DecodeRequest {
  id: number;
  file: string;
  size: number;
  /** crops to resize (OpenForensics faces), one image each, in order; absent: the whole image */
  boxes?: BoxCrop[];
}

export type DecodeReply =
  /** crc: CRC-32 of `pixels` (a whole image's: absent for boxes), made here for the cache's index */
  | { id: number; ok: true; pixels: Uint8Array; crc?: number }
  | { id: number; ok: false; unreadable: boolean; message: string; path: string };

/** The first message of a worker: its modules (sharp, koffi and libjpeg-turbo) are loaded. */
export interface DecodeReady {
  ready: true;
}

parentPort?.on('message', (req: DecodeRequest) => {
  // Read synchronously: this thread has nothing else to do meanwhile (see readImageFileSync).
  new Promise<Uint8Array>((resolve) => resolve(readImageFileSync(req.file)))
    .then((buf) => decodeBufferToBytes(buf, req.file, req.size, req.boxes))
    .then(
    (pixels) => {
      // The checksum the decoded cache stores with the image, computed on this thread, which has the
      // bytes in its cache now, instead of on the main thread, which has the shard writes to do.
      const crc = req.boxes ? undefined : crc32(pixels);
      parentPort?.postMessage({ id: req.id, ok: true, pixels, ...(crc === undefined ? {} : { crc }) } satisfies DecodeReply, [pixels.buffer as ArrayBuffer]);
    },
    (e: unknown) => {
      const unreadable = e instanceof UnreadableImageError;
      parentPort?.postMessage({ id: req.id, ok: false, unreadable, message: (e as Error).message, path: unreadable ? e.path : req.file } satisfies DecodeReply);
    },
  );
});

// Load the JPEG decoder now, so that a pool started ahead of its first image (DecodePool.start) has
// nothing left to load when the images come.
await turboJpeg();
parentPort?.postMessage({ ready: true } satisfies DecodeReady);

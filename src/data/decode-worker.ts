// Worker thread of the decode pool (decode-pool.ts): decodes an image file and resizes it to the
// training size as CHW bytes. sharp decodes on libvips' threads; the resize is our JavaScript, which
// is why it runs here and not on the main thread.
import { parentPort } from 'node:worker_threads';
import { decodeImage, toCHWBytes, UnreadableImageError } from './image.js';

export interface DecodeRequest {
  id: number;
  file: string;
  size: number;
}

export type DecodeReply =
  | { id: number; ok: true; pixels: Uint8Array }
  | { id: number; ok: false; unreadable: boolean; message: string; path: string };

parentPort?.on('message', (req: DecodeRequest) => {
  decodeImage(req.file).then(
    (img) => {
      const pixels = toCHWBytes(img, req.size);
      parentPort?.postMessage({ id: req.id, ok: true, pixels } satisfies DecodeReply, [pixels.buffer as ArrayBuffer]);
    },
    (e: unknown) => {
      const unreadable = e instanceof UnreadableImageError;
      parentPort?.postMessage({ id: req.id, ok: false, unreadable, message: (e as Error).message, path: unreadable ? e.path : req.file } satisfies DecodeReply);
    },
  );
});

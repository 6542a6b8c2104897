// The decode pool: worker threads give the bytes a decode on the main thread gives (whole images and
// box crops), many requests at once come back to their callers, and an unreadable file is an
// UnreadableImageError naming it, from a worker as from the main thread.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DecodePool, workerBootstrap } from '../../src/data/decode-pool.js';
import { decodeToBytes, UnreadableImageError, writePng, type BoxCrop } from '../../src/data/image.js';
import { budget } from '../budget.js';

let dir: string;
const files: string[] = [];
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-pool-'));
  for (let k = 0; k < 12; k++) {
    const w = 20 + 7 * k, h = 18 + 5 * k;
    const f = path.join(dir, `img_${k}.png`);
    await writePng(f, { width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).map((_, j) => (j * 29 + k * 53 + (j >> 5)) % 256) });
    files.push(f);
  }
  fs.writeFileSync(path.join(dir, 'broken.png'), 'not an image');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('the decode pool', () => {
  it('runs its workers from one bundled module, without a TypeScript loader per worker', () => {
    const src = workerBootstrap();
    expect(src).not.toMatch(/register\(\)/);
    expect(src).toMatch(/parentPort/);
    expect(src).toMatch(/from "file:\/\/[^"]*sharp[^"]*"/);
  });

  for (const threads of [0, 2]) {
    it(`with ${threads} worker threads gives the main thread's bytes, for whole images and box crops`, async () => {
      const pool = new DecodePool(threads);
      try {
        const boxes: BoxCrop[] = [{ box: [2, 3, 9, 8], scale: 1.3 }, { box: [10, 4, 6, 12], scale: 1 }];
        const jobs = files.flatMap((f, k) => [
          { f, size: 5 + (k % 4) * 7, boxes: undefined },
          { f, size: 9, boxes },
        ]);
        const got = await Promise.all(jobs.map((j) => pool.decode(j.f, j.size, j.boxes)));
        for (let k = 0; k < jobs.length; k++) {
          const want = await decodeToBytes(jobs[k].f, jobs[k].size, jobs[k].boxes);
          expect(Buffer.from(got[k]).equals(Buffer.from(want)), `${jobs[k].f} at ${jobs[k].size}`).toBe(true);
        }
        const bad = path.join(dir, 'broken.png');
        const err = await pool.decode(bad, 8).then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(UnreadableImageError);
        expect((err as UnreadableImageError).path).toBe(bad);
        expect((err as Error).message).toContain(bad);
        expect((err as Error).message.includes('\n')).toBe(false);
        // The pool goes on after a failure.
        expect(Buffer.from(await pool.decode(files[0], 6)).equals(Buffer.from(await decodeToBytes(files[0], 6)))).toBe(true);
      } finally {
        await pool.close();
      }
    }, budget(60_000));
  }
});

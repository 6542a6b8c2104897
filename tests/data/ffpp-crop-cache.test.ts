// FaceForensics++'s PNG crop cache is tied to each source's identity (data/decoded.ts cropCacheName): a
// frame image or video changed after it was cropped is cropped afresh, with the decoded cache's one-line
// note naming it, and never served from the crop an earlier version left, with or without the decoded
// cache; unchanged sources keep being read from their crops (the cropper is not asked again).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cropImage, decodeImage, resizeRgb, toCHWBytes, writePng, type Rect, type RgbImage } from '../../src/data/image.js';
import { openDataset, type Dataset, type FaceCropper } from '../../src/data/datasets.js';
import { centreSquare } from '../../src/data/dataset-ffpp.js';
import { closeShardCaches, isPixelDataset } from '../../src/data/decoded.js';

const S = 8;
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tl-ffpp-crops-'));
});
afterAll(() => {
  closeShardCaches();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function frame(seed: number, w = 40, h = 30): RgbImage {
  return { width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).map((_, j) => (j * 7 + seed * 53 + (j >> 5)) % 256) };
}

/** The split that holds the samples (a fake joins its target's identity group, so one split has all). */
function filled(ds: { train: Dataset; val: Dataset; test: Dataset }): Dataset {
  return [ds.train, ds.val, ds.test].find((d) => d.length() > 0)!;
}

async function pixels(d: Dataset): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (let i = 0; i < d.length(); i++) {
    const s = await d.get(i);
    out.set(`${s.path}#${i}`, Array.from(s.pixels!));
  }
  if (isPixelDataset(d)) await d.flushCache();
  return out;
}

/** Moves a file's modification time on, so a rewrite is seen even where mtimes are coarse. */
function touchLater(file: string, seconds: number): void {
  const t = new Date(Date.now() + seconds * 1000);
  fs.utimesSync(file, t, t);
}

const changedNote = (file: string) => `${file} changed since it was cached (size or modification time); decoded afresh`;

describe('FaceForensics++ crop cache', () => {
  it('a frame image changed after its face crop was cached is cropped afresh (decoded cache on and off)', async () => {
    const root = path.join(tmp, 'frames');
    const dirs = ['original_sequences/youtube/c23/images/000', 'manipulated_sequences/Deepfakes/c23/images/000_001'];
    for (const [k, dir] of dirs.entries()) for (let f = 0; f < 2; f++) await writePng(path.join(root, dir, `000${f}.png`), frame(2 * k + f));
    const rect: Rect = { left: 3, top: 5, width: 12, height: 12 };
    let calls = 0;
    const faceCrop: FaceCropper = async () => {
      calls++;
      return rect;
    };
    const want = (img: RgbImage) => Array.from(toCHWBytes(resizeRgb(cropImage(img, rect), S, S), S));
    const open = async (decodedCache: boolean, warnings: string[]) => {
      closeShardCaches();
      return filled(await openDataset(root, { size: S, decodedCache, faceforensics: { framesPerVideo: 2, faceCrop }, warn: (m) => warnings.push(m) }));
    };
    const first = await pixels(await open(true, []));
    expect(first.size).toBe(4);
    expect(calls).toBe(4);
    for (const [key, px] of first) expect(px).toEqual(want(await decodeImage(key.split('#')[0])));

    const changed = path.join(root, dirs[1], '0001.png');
    for (const decodedCache of [true, false]) {
      const img = frame(decodedCache ? 11 : 12);
      await writePng(changed, img);
      touchLater(changed, decodedCache ? 10 : 20);
      calls = 0;
      const warnings: string[] = [];
      const again = await pixels(await open(decodedCache, warnings));
      for (const [key, px] of again) {
        if (key.startsWith(`${changed}#`)) expect(px, 'the changed frame').toEqual(want(img));
        else expect(px, key).toEqual(first.get(key));
      }
      // Only the changed frame is cropped again; the others come from the shards or their PNG crops.
      expect(calls).toBe(1);
      expect(warnings).toEqual(decodedCache ? [changedNote(changed)] : []);
    }
  });

  it('a video changed after its frames were extracted is extracted afresh; without ffmpeg only frames of the video as it is count', async () => {
    const root = path.join(tmp, 'videos');
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    // Stub ffprobe/ffmpeg: 12 frames; ffmpeg copies the PNG whose path the "video" holds, once per selected frame.
    const log = path.join(bin, 'calls.log');
    fs.writeFileSync(path.join(bin, 'ffprobe'), '#!/bin/sh\necho 12\n', { mode: 0o755 });
    fs.writeFileSync(path.join(bin, 'ffmpeg'), [
      '#!/bin/sh',
      `echo call >> '${log}'`,
      'vf=""; in=""; out=""',
      'while [ $# -gt 0 ]; do case "$1" in -vf) vf="$2";; -i) in="$2";; esac; out="$1"; shift; done',
      "n=$(printf '%s' \"$vf\" | grep -o 'eq(' | wc -l)",
      'k=1; while [ $k -le $n ]; do cp "$(cat "$in")" "$(printf "$out" $k)"; k=$((k+1)); done',
      '',
    ].join('\n'), { mode: 0o755 });
    const templates = [0, 1, 2].map((k) => path.join(bin, `frame${k}.png`));
    for (const [k, t] of templates.entries()) await writePng(t, frame(30 + k, 24, 16));
    const videos = ['original_sequences/youtube/c23/videos/000.mp4', 'manipulated_sequences/Deepfakes/c23/videos/000_001.mp4'].map((r) => path.join(root, r));
    for (const v of videos) {
      fs.mkdirSync(path.dirname(v), { recursive: true });
      fs.writeFileSync(v, templates[0]);
    }
    const want = async (t: string) => {
      const img = await decodeImage(t);
      return Array.from(toCHWBytes(resizeRgb(cropImage(img, centreSquare(img)), S, S), S));
    };
    const open = async (decodedCache: boolean, warnings: string[], ffmpeg = path.join(bin, 'ffmpeg')) => {
      closeShardCaches();
      return openDataset(root, { size: S, crop: 'centre', decodedCache, faceforensics: { framesPerVideo: 2, ffmpeg }, warn: (m) => warnings.push(m) });
    };
    const runs = () => fs.readFileSync(log, 'utf8').trim().split('\n').length;
    const first = await pixels(filled(await open(true, [])));
    expect(first.size).toBe(4);
    for (const px of first.values()) expect(px).toEqual(await want(templates[0]));
    expect(runs()).toBe(2);

    const [, changed] = videos;
    for (const [n, decodedCache] of [[1, true], [2, false]] as const) {
      fs.writeFileSync(changed, templates[n]);
      touchLater(changed, 10 * n);
      const warnings: string[] = [];
      const again = await pixels(filled(await open(decodedCache, warnings)));
      for (const [key, px] of again) expect(px, key).toEqual(await want(key.startsWith(`${changed}#`) ? templates[n] : templates[0]));
      expect(runs(), 'one more ffmpeg run: the changed video only').toBe(2 + n);
      expect(warnings).toEqual(decodedCache ? [changedNote(changed)] : []);
    }
    // Without ffmpeg: the changed video's current frames were extracted, so it still counts; after
    // another change nothing extracted matches it, and it is skipped with the usual warning.
    expect(filled(await open(false, [], path.join(bin, 'missing'))).length()).toBe(4);
    fs.writeFileSync(changed, templates[0] + ' ');
    const warnings: string[] = [];
    expect(filled(await open(false, warnings, path.join(bin, 'missing'))).length()).toBe(2);
    expect(warnings).toEqual([`${root}: 1 videos have no extracted frames and ffmpeg is not on PATH; skipped`]);
  });
});

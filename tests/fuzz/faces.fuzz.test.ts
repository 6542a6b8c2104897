// Fuzz: source folders a hostile, unlucky user hands `ticketlab faces` (issue 20): photos whose safe names
// collide (x.jpg / x.png / x.PNG, 'p q.jpg' / 'p_q.jpg'), FIFOs named like videos and photos, /dev/zero and
// /dev/null behind image names, and --out inside (or equal to) the source. Either the run refuses in one
// line before writing anything, or every source gets its own crop file and the index lists each once.
// The detector is a stub that finds one face per image (the GPU detector has its own tests): what is
// fuzzed here is the listing, naming, refusing and writing around it. Nothing may hang.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodePng, type RgbImage } from '../../src/data/image.js';
import type { FaceDetector } from '../../src/faces/detector.js';
import { FACES_FILES, extractFaces, type FaceIndexRecord, type FacesSettings } from '../../src/faces/extract.js';
import { expectOneLineError, fuzzRuns, fuzzSeed, fuzzTimeout, snapshot, withinMs } from './fuzz-util.js';

const SETTINGS: FacesSettings = { every: 1, perVideo: 0, pick: 'largest', margin: 1.3, size: 8, minConfidence: 0.5, seed: 0, align: false };

/** One face in the middle of every image: enough for a crop, no GPU. */
const STUB_DETECTOR = {
  async detect(images: readonly RgbImage[]) {
    return images.map((img) => [{ x: img.width / 4, y: img.height / 4, width: img.width / 2, height: img.height / 2, score: 0.9 }]);
  },
} as unknown as FaceDetector;

const STEMS = ['x', 'p q', 'p_q', 'p-q', 'a.b', 'a_b', 'é', 'e'];
const EXTS = ['jpg', 'png', 'PNG', 'jpeg'];
const FOLDERS = ['real', 'fake', 'train/real', 'train/fake', 'real/sub', 'real/sub dir', 'real/sub_dir'];

type Entry =
  | { kind: 'photo'; folder: string; stem: string; ext: string }
  | { kind: 'fifo'; folder: string; stem: string; ext: string }
  | { kind: 'device'; folder: string; stem: string; ext: string; target: '/dev/zero' | '/dev/null' };

const entry: fc.Arbitrary<Entry> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ kind: fc.constant('photo' as const), folder: fc.constantFrom(...FOLDERS), stem: fc.constantFrom(...STEMS), ext: fc.constantFrom(...EXTS) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fifo' as const), folder: fc.constantFrom(...FOLDERS), stem: fc.constantFrom(...STEMS), ext: fc.constantFrom('mp4', 'jpg', 'png') }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('device' as const), folder: fc.constantFrom(...FOLDERS), stem: fc.constantFrom(...STEMS), ext: fc.constantFrom('jpg', 'mp4'), target: fc.constantFrom('/dev/zero' as const, '/dev/null' as const) }),
  },
);

/** Where --out goes: outside SRC, SRC itself, inside it, or inside it through a symlink to SRC. */
type OutPlace = 'outside' | 'same' | 'inside' | 'inside-deep' | 'via-link';

let png: Buffer;
/** Makes the tree; returns the photos made and whether any FIFO or device was (a later entry with a taken name is skipped). */
async function build(src: string, entries: Entry[]): Promise<{ photos: Set<string>; special: boolean }> {
  png ??= await encodePng({ width: 16, height: 16, channels: 3, data: new Uint8Array(16 * 16 * 3).fill(120) });
  const photos = new Set<string>();
  let special = false;
  for (const e of entries) {
    const dir = path.join(src, e.folder);
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${e.stem}.${e.ext}`);
    if (fs.existsSync(file)) continue;
    if (e.kind === 'photo') {
      fs.writeFileSync(file, png);
      photos.add(path.relative(src, file).split(path.sep).join('/'));
    } else if (e.kind === 'fifo') {
      execFileSync('mkfifo', [file]);
      special = true;
    } else {
      fs.symlinkSync(e.target, file);
      special = true;
    }
  }
  return { photos, special };
}

function outFor(place: OutPlace, src: string, root: string): string {
  switch (place) {
    case 'outside':
      return path.join(root, 'out');
    case 'same':
      return src;
    case 'inside':
      return path.join(src, 'crops');
    case 'inside-deep':
      return path.join(src, 'real', '..', 'fake', 'crops');
    case 'via-link':
      fs.symlinkSync(src, path.join(root, 'link'));
      return path.join(root, 'link', 'crops');
  }
}

describe('faces fuzz', () => {
  it(
    'collisions, FIFOs, devices and --out inside SRC: a one-line refusal that writes nothing, or one crop file per source',
    async () => {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(entry, { minLength: 1, maxLength: 10 }),
          fc.constantFrom<OutPlace>('outside', 'outside', 'outside', 'same', 'inside', 'inside-deep', 'via-link'),
          async (entries, place) => {
            const root = fs.mkdtempSync(path.join(os.tmpdir(), `ticketlab-faces-fuzz-${n++}-`));
            try {
              const src = path.join(root, 'src');
              fs.mkdirSync(src);
              const { photos, special: nonRegular } = await build(src, entries);
              const out = outFor(place, src, root);
              const before = snapshot(src);
              const lines: string[] = [];
              let result: Awaited<ReturnType<typeof extractFaces>> | null = null;
              let err: unknown = null;
              try {
                result = await withinMs(20_000, 'extractFaces', extractFaces({ src, out, settings: SETTINGS, detector: STUB_DETECTOR, quiet: true, log: (m) => lines.push(m) }));
              } catch (e) {
                err = e;
              }
              if (place !== 'outside' || nonRegular) {
                // Refused up front, in one line, with SRC untouched (no crops, no staging, no config).
                expectOneLineError(err, JSON.stringify({ entries, place }));
                const msg = (err as Error).message;
                if (nonRegular) expect(msg).toMatch(/is (a FIFO \(named pipe\)|a character device|a block device|a socket|a folder|not a regular file), not a regular file|--out .* (is the source folder|is inside the source folder)/);
                else expect(msg).toMatch(/^--out .* (is the source folder|is inside the source folder)/);
                expect(snapshot(src)).toEqual(before);
                if (place === 'outside') expect(fs.existsSync(out)).toBe(false);
                return;
              }
              if (err) throw err;
              expect(result!.failed).toEqual([]);
              const recs = fs.readFileSync(path.join(out, FACES_FILES.index), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as FaceIndexRecord);
              // Every photo once in the index, each with its own existing crop file.
              expect(recs.map((r) => r.source).sort()).toEqual([...photos].sort());
              expect(new Set(recs.map((r) => r.file)).size).toBe(recs.length);
              for (const r of recs) expect(fs.existsSync(path.join(out, r.file)), r.file).toBe(true);
              const pngs = (dir: string): number =>
                fs.readdirSync(dir, { withFileTypes: true }).reduce((s, e) => s + (e.isDirectory() ? pngs(path.join(dir, e.name)) : e.name.endsWith('.png') ? 1 : 0), 0);
              expect(pngs(out)).toBe(recs.length);
              expect(snapshot(src)).toEqual(before);
            } finally {
              fs.rmSync(root, { recursive: true, force: true });
            }
          },
        ),
        { numRuns: fuzzRuns(25, 4), seed: fuzzSeed },
      );
    },
    fuzzTimeout,
  );
});

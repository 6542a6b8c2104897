// What `ticketlab faces` reads: the videos, frame folders and images under SRC, each with its label,
// split and leakage group. Layouts: a FaceForensics++ release (original_sequences/ +
// manipulated_sequences/, official split files), a Celeb-DF (v1/v2) release (Celeb-real/, YouTube-real/,
// Celeb-synthesis/, List_of_testing_videos.txt), or any folder of videos and images labelled by a
// real/ or fake/ folder on their path (split by a train/val/test folder on the path when there is one).
import { promises as fs, type Dirent, type Stats } from 'node:fs';
import * as path from 'node:path';
import { listFaceForensics, type SplitName } from '../data/datasets.js';
import { hashKey, hashString, unitFloat } from '../data/random.js';

export type SourceKind = 'video' | 'frames' | 'image';

export interface FaceSource {
  kind: SourceKind;
  /** The video or image file; for 'frames', the folder. */
  file: string;
  /** Sorted frame files ('frames' only). */
  frames?: string[];
  /** Path relative to SRC, '/'-separated: the source's name in faces.jsonl and in crop file names. */
  key: string;
  label: 0 | 1;
  split: SplitName;
  /** Unit that never straddles splits (a video, an identity). */
  group: string;
}

export type SourceLayout = 'faceforensics' | 'celebdf' | 'folder';

export const VIDEO_EXT = /\.(mp4|avi|mov|mkv|webm)$/i;
const IMAGE_EXT = /\.(jpe?g|png|bmp|webp)$/i;

async function readDir(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function keyOf(root: string, file: string): string {
  return path.relative(root, file).split(path.sep).join('/');
}

/** Seeded split of a group in FF++'s official proportions (720/140/140 of 1000). */
export function seededSplit(group: string, seed: number): SplitName {
  const u = unitFloat(hashKey(seed, hashString('faces'), hashString(group)));
  return u < 0.72 ? 'train' : u < 0.86 ? 'val' : 'test';
}

export async function detectSourceLayout(root: string): Promise<SourceLayout> {
  if ((await exists(path.join(root, 'original_sequences'))) || (await exists(path.join(root, 'manipulated_sequences')))) return 'faceforensics';
  if ((await exists(path.join(root, 'Celeb-synthesis'))) || (await exists(path.join(root, 'Celeb-real')))) return 'celebdf';
  return 'folder';
}

async function faceForensicsSources(root: string, seed: number, warn: (m: string) => void): Promise<FaceSource[]> {
  const videos = await listFaceForensics(root, {}, seed, warn);
  return videos.map((v): FaceSource => {
    const base = { label: v.label, split: v.split, group: v.group };
    if (v.video) return { ...base, kind: 'video', file: v.video, key: keyOf(root, v.video) };
    const dir = path.dirname(v.frames![0]);
    return { ...base, kind: 'frames', file: dir, frames: v.frames!, key: keyOf(root, dir) };
  });
}

/**
 * Celeb-DF: Celeb-real/ and YouTube-real/ are real, Celeb-synthesis/ fake. The test split is
 * List_of_testing_videos.txt ("<1 real | 0 fake> <folder>/<name>.mp4" per line); the rest is split
 * into train/val by identity (id<N> in the name; a fake idA_idB_k joins A and B's group via A).
 */
async function celebDfSources(root: string, seed: number): Promise<FaceSource[]> {
  const testList = path.join(root, 'List_of_testing_videos.txt');
  const test = new Set<string>();
  if (await exists(testList)) {
    for (const line of (await fs.readFile(testList, 'utf8')).split('\n')) {
      const rel = line.trim().split(/\s+/)[1];
      if (rel) test.add(rel.replace(/\\/g, '/'));
    }
  }
  const out: FaceSource[] = [];
  for (const [folder, label] of [['Celeb-real', 0], ['YouTube-real', 0], ['Celeb-synthesis', 1]] as const) {
    const names = (await readDir(path.join(root, folder))).filter((e) => VIDEO_EXT.test(e.name)).map((e) => e.name).sort(byteOrder);
    for (const name of names) {
      const key = `${folder}/${name}`;
      const id = /^(id\d+)/.exec(name)?.[1] ?? key;
      const group = `identity:${id}`;
      const split: SplitName = test.has(key) ? 'test' : unitFloat(hashKey(seed, hashString('celebdf'), hashString(group))) < 0.85 ? 'train' : 'val';
      out.push({ kind: 'video', file: path.join(root, folder, name), key, label, split, group });
    }
  }
  return out;
}

/** What a folder's name says: a label (real/fake, also original/manipulated) or a split (train/val/test). */
function folderTag(name: string): { label?: 0 | 1; split?: SplitName } | null {
  const part = name.toLowerCase();
  if (part === 'real' || part === 'original' || part === 'original_sequences') return { label: 0 };
  if (part === 'fake' || part === 'manipulated' || part === 'manipulated_sequences') return { label: 1 };
  if (part === 'train') return { split: 'train' };
  if (part === 'val' || part === 'validation') return { split: 'val' };
  if (part === 'test') return { split: 'test' };
  return null;
}

/**
 * The tag folders SRC itself ends with: `faces data/train/real` labels its files real and train, as
 * `faces data` labels data/train/real/a.jpg. Only the unbroken run of tag names at the end counts, so an
 * unrelated folder further up (/mnt/test/mydata) never labels or splits anything.
 */
function rootTagFolders(root: string): string[] {
  const parts = path.resolve(root).split(path.sep).filter(Boolean);
  let i = parts.length;
  while (i > 0 && folderTag(parts[i - 1])) i--;
  return parts.slice(i);
}

/** Labels and split from the folders on a path (innermost wins): real/fake, train/val/test. */
function pathTags(folders: string[]): { label: 0 | 1 | null; split: SplitName | null } {
  let label: 0 | 1 | null = null;
  let split: SplitName | null = null;
  for (const part of folders) {
    const t = folderTag(part);
    if (t?.label !== undefined) label = t.label;
    if (t?.split !== undefined) split = t.split;
  }
  return { label, split };
}

async function folderSources(root: string, seed: number): Promise<FaceSource[]> {
  const out: FaceSource[] = [];
  const unlabelled: string[] = [];
  const above = rootTagFolders(root);
  const walk = async (dir: string): Promise<void> => {
    for (const e of (await readDir(dir)).sort((a, b) => byteOrder(a.name, b.name))) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        await walk(p);
        continue;
      }
      const kind: SourceKind | null = VIDEO_EXT.test(e.name) ? 'video' : IMAGE_EXT.test(e.name) ? 'image' : null;
      if (!kind) continue;
      const key = keyOf(root, p);
      const tags = pathTags([...above, ...key.split('/').slice(0, -1)]);
      if (tags.label === null) {
        unlabelled.push(key);
        continue;
      }
      const group = `file:${key}`;
      out.push({ kind, file: p, key, label: tags.label, split: tags.split ?? seededSplit(group, seed), group });
    }
  };
  await walk(root);
  if (unlabelled.length) {
    throw new Error(`${path.join(root, unlabelled[0])}: no real/ or fake/ folder on its path (${unlabelled.length} such files); put sources under real/ and fake/`);

  }
  return out;
}

const NOT_REGULAR: [keyof Stats & `is${string}`, string][] = [
  ['isFIFO', 'a FIFO (named pipe)'],
  ['isCharacterDevice', 'a character device'],
  ['isBlockDevice', 'a block device'],
  ['isSocket', 'a socket'],
  ['isDirectory', 'a folder'],
];

/**
 * Refuses, before anything is read, a source that is not a regular file: reading a FIFO or a device
 * (/dev/zero behind a .jpg name, a pipe named .mp4) blocks or never ends, in ffmpeg and in our own reads.
 */
async function refuseNonRegular(sources: FaceSource[]): Promise<void> {
  for (const s of sources) {
    for (const file of s.frames ?? [s.file]) {
      const st = await fs.stat(file).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`${file}: cannot read it (${e.code ?? e.message.split('\n')[0]})`);
      });
      if (st.isFile()) continue;
      const what = NOT_REGULAR.find(([is]) => (st[is] as () => boolean).call(st))?.[1] ?? 'not a regular file';
      throw new Error(`${file} is ${what}, not a regular file; ticketlab faces reads only regular files: move it out of the source folder`);
    }
  }
}

/** Lists SRC's sources; an empty or unrecognisable SRC is a one-line error naming it. */
export async function listFaceSources(root: string, seed = 0, warn: (m: string) => void = () => {}): Promise<{ layout: SourceLayout; sources: FaceSource[] }> {
  const st = await fs.stat(root).catch(() => null);
  if (!st?.isDirectory()) throw new Error(`${root}: no such folder`);
  const layout = await detectSourceLayout(root);
  const sources = layout === 'faceforensics' ? await faceForensicsSources(root, seed, warn) : layout === 'celebdf' ? await celebDfSources(root, seed) : await folderSources(root, seed);
  if (sources.length === 0) throw new Error(`${root}: no videos (mp4/avi/mov/mkv/webm) or images found`);
  await refuseNonRegular(sources);
  return { layout, sources };
}

// `ticketlab faces`: face crops from videos, frame folders and photos into the image-folder layout that
// --data reads (OUT/{train,val,test}/{real,fake}/), with an index (faces.jsonl) and resume.
//
// Resume: a source is finished when its line is in faces-done.jsonl, written after its crops and index
// lines. A killed run leaves at most one unfinished source; on restart its index lines are dropped
// (faces.jsonl is rewritten atomically to the finished sources' lines) and it is done again, overwriting
// its crops. Settings live in faces-config.json: resuming with other settings is an error.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { cropImage, decodeImageBuffer, resizeRgb, writePng, type RgbImage } from '../data/image.js';
import { writeFileAtomicSync, writeJsonAtomicSync } from '../io/atomic.js';
import { appendJsonlSync, readJsonlSync } from '../io/jsonl.js';
import { isSameOrInside, makeRunDir } from '../io/out-dir.js';
import { Progress } from '../util/progress.js';
import { alignedCrop, eyeAlignment } from './align.js';
import type { FaceDetector } from './detector.js';
import type { FaceLandmark68Net, Point } from './landmarks.js';
import { faceRect, pickFaces, type FacePick } from './crop.js';
import { listFaceSources, type FaceSource, type SourceLayout } from './sources.js';

const execFileP = promisify(execFile);

/** The files `ticketlab faces` writes beside the crops. */
export const FACES_FILES = {
  index: 'faces.jsonl',
  done: 'faces-done.jsonl',
  config: 'faces-config.json',
} as const;

export interface FacesSettings {
  every: number;
  /** At most this many crops per source; 0 = no limit. */
  perVideo: number;
  pick: FacePick;
  margin: number;
  size: number;
  minConfidence: number;
  seed: number;
  /** Eye-level crops from the 68-point landmark net (see align.ts for the geometry). */
  align: boolean;
}

export interface FaceIndexRecord {
  source: string;
  frame: number;
  face: number;
  box: [number, number, number, number];
  score: number;
  file: string;
  split: string;
  label: 'real' | 'fake';
  /** With --align: the 68 landmarks in source pixels, [x, y] to 0.1 px. */
  landmarks?: Point[];
  /** With --align: eye centres in source pixels (image-left eye, points 36-41, then 42-47). */
  eyes?: [Point, Point];
  /** With --align: the eye line's angle in the source, degrees clockwise; the crop is rotated by -angle. */
  angle?: number;
}

interface DoneRecord {
  source: string;
  crops: number;
  frames: number;
}

export interface FacesResult {
  layout: SourceLayout;
  sources: number;
  skipped: number;
  crops: number;
  frames: number;
  failed: string[];
  seconds: number;
  detectSeconds: number;
  /** Time in the landmark net (with --align). */
  landmarkSeconds: number;
}

export interface FacesRun {
  src: string;
  out: string;
  settings: FacesSettings;
  detector: FaceDetector;
  /** Required when settings.align is set. */
  landmarks?: FaceLandmark68Net;
  log?: (m: string) => void;
  quiet?: boolean;
  /**
   * Checked between frames: a requested stop ends the run after the current frame (the source is redone
   * on resume). `signal`, when given, also kills a running ffmpeg at once.
   */
  stop?: { stop: boolean; signal?: AbortSignal };
  /** Deadline of one external read (ffmpeg on a video, one image file), in seconds. Default READ_TIMEOUT_S. */
  readTimeoutS?: number;
}

/** Default deadline of one external read: ffmpeg staging a video's frames, or reading one image file. */
export const READ_TIMEOUT_S = 600;

/** A source that cannot be read: reported in one line, counted, and retried on the next run. */
class UnreadableSource extends Error {}

/** A stop request (SIGINT/SIGTERM) that ended a read mid-way. */
class Stopped extends Error {}

/** Whether an error (ours, Node's, or ffmpeg's words) says the disk is full. */
export function isDiskFull(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown; stderr?: unknown };
  return err?.code === 'ENOSPC' || /no space left on device|ENOSPC/i.test(`${String(err?.message ?? '')} ${String(err?.stderr ?? '')}`);
}

function diskFull(out: string, doing: string): Error {
  return new Error(`faces: the disk holding ${out} is full (no space left on device) while ${doing}; free some space and rerun the same command to continue`);
}

/**
 * Frames of a video, every k-th from frame 0, as PNGs in a temporary folder (removed by the caller);
 * at most `limit` of them (0 = all).
 */
async function videoFrames(file: string, every: number, limit: number, tmp: string, o: ReadOptions): Promise<{ frame: number; file: string }[]> {
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const cap = limit > 0 ? ['-frames:v', String(limit)] : [];
  try {
    await execFileP('ffmpeg', ['-v', 'error', '-nostdin', '-i', file, '-vf', `select='not(mod(n\\,${every}))'`, '-vsync', '0', ...cap, path.join(tmp, '%08d.png')], {
      maxBuffer: 1 << 20,
      // The deadline and a stop request both kill ffmpeg itself (SIGKILL: a child blocked in a read
      // may ignore SIGTERM's default handling only while stopped, but never SIGKILL).
      timeout: o.timeoutS * 1000,
      killSignal: 'SIGKILL',
      signal: o.signal,
    });
  } catch (e) {
    const err = e as { stderr?: string; message?: string; killed?: boolean; signal?: string; name?: string };
    if (o.signal?.aborted || err.name === 'AbortError') throw new Stopped('stopped');
    if (isDiskFull(err)) throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
    if (err.killed || err.signal === 'SIGKILL') throw new UnreadableSource(`ffmpeg did not finish reading it within ${o.timeoutS} s (--read-timeout)`);
    const first = (err.stderr || err.message || String(e)).trim().split('\n').pop() ?? '';
    throw new UnreadableSource(`ffmpeg cannot read it: ${first}`);
  }
  const names = fs.readdirSync(tmp).filter((f) => f.endsWith('.png')).sort();
  if (names.length === 0) throw new UnreadableSource('ffmpeg found no video frames in it');
  // ffmpeg numbers the selected frames 1, 2, ...: output i is frame (i - 1) * every.
  return names.map((n) => ({ frame: (parseInt(n, 10) - 1) * every, file: path.join(tmp, n) }));
}

interface ReadOptions {
  timeoutS: number;
  signal?: AbortSignal;
}

/**
 * Reads and decodes one image with a deadline: a file on a hung network mount must not stall the run
 * for ever (FIFOs and devices are refused before the run, by listFaceSources).
 */
async function readImage(file: string, o: ReadOptions): Promise<RgbImage> {
  const signals = [AbortSignal.timeout(o.timeoutS * 1000), ...(o.signal ? [o.signal] : [])];
  let buf: Buffer;
  try {
    buf = await fs.promises.readFile(file, { signal: AbortSignal.any(signals) });
  } catch (e) {
    if (o.signal?.aborted) throw new Stopped('stopped');
    const err = e as NodeJS.ErrnoException;
    if (err.name === 'AbortError' || err.name === 'TimeoutError') throw new UnreadableSource(`reading it took more than ${o.timeoutS} s (--read-timeout)`);
    throw new UnreadableSource(`cannot read it (${err.code ?? err.message.split('\n')[0]})`);
  }
  return decodeImageBuffer(buf, file);
}

/**
 * With --per-video N, a video is read up to 4N sampled frames: enough when most frames show a face,
 * and it bounds the PNGs staged on disk for long videos.
 */
export const FRAMES_PER_CROP_CAP = 4;

function framesOf(s: FaceSource, st: FacesSettings, tmp: string, o: ReadOptions): Promise<{ frame: number; file: string }[]> {
  const every = st.every;
  if (s.kind === 'video') return videoFrames(s.file, every, st.perVideo * FRAMES_PER_CROP_CAP, tmp, o);
  if (s.kind === 'frames') return Promise.resolve(s.frames!.map((file, frame) => ({ frame, file })).filter((f) => f.frame % every === 0));
  return Promise.resolve([{ frame: 0, file: s.file }]);
}

/**
 * A crop's file name: the source's path made file-name safe, plus a hash of the exact path, since making
 * it safe is lossy (`x.jpg` and `x.png`, `p q.jpg` and `p_q.jpg` read alike) and two sources must never
 * share a crop name.
 */
export function cropName(key: string, frame: number, face: number): string {
  const stem = key.replace(/[^\w-]+/g, '_');
  const tag = createHash('sha256').update(key).digest('hex').slice(0, 8);
  return `${stem}-${tag}_f${String(frame).padStart(6, '0')}_${face}.png`;
}

function checkSettings(out: string, settings: FacesSettings, src: string): void {
  const file = path.join(out, FACES_FILES.config);
  const want = { src: path.resolve(src), ...settings };
  if (fs.existsSync(file)) {
    const have = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    for (const [k, v] of Object.entries(want)) {
      // Folders made before --align existed hold no align setting: they are unaligned.
      const had = k === 'align' ? (have[k] ?? false) : have[k];
      if (JSON.stringify(had) !== JSON.stringify(v)) {
        throw new Error(`${out} holds crops made with ${k}=${JSON.stringify(have[k])}, not ${JSON.stringify(v)}; use another --out or the same settings`);
      }
    }
    return;
  }
  writeJsonAtomicSync(file, want);
}

/** Finished sources; drops index lines of unfinished ones (a killed run) so the index matches the crops. */
function resumeState(out: string): { done: Set<string>; owners: Map<string, string> } {
  const doneFile = path.join(out, FACES_FILES.done);
  const indexFile = path.join(out, FACES_FILES.index);
  const done = new Set(fs.existsSync(doneFile) ? readJsonlSync<DoneRecord>(doneFile).records.map((r) => r.source) : []);
  const owners = new Map<string, string>();
  if (fs.existsSync(indexFile)) {
    const recs = readJsonlSync<FaceIndexRecord>(indexFile).records;
    const kept = recs.filter((r) => done.has(r.source));
    if (kept.length !== recs.length) writeFileAtomicSync(indexFile, kept.map((r) => JSON.stringify(r) + '\n').join(''));
    for (const r of kept) owners.set(r.file, r.source);
  }
  return { done, owners };
}

/**
 * Refuses --out inside (or equal to) SRC: the crops would be listed as sources by the next run, and
 * the run would read its own output.
 */
function refuseOutInsideSrc(out: string, src: string): void {
  if (isSameOrInside(out, src)) {
    throw new Error(`--out ${out} is ${path.resolve(out) === path.resolve(src) ? 'the source folder' : `inside the source folder ${src}`}: the next run would read its own crops as sources; choose a folder outside ${src}`);
  }
}

export async function extractFaces(run: FacesRun): Promise<FacesResult> {
  const { out, settings: st, detector } = run;
  if (st.align && !run.landmarks) throw new Error('faces: align is set but no landmark net was given');
  const log = run.log ?? ((m: string) => process.stderr.write(m + '\n'));
  const t0 = performance.now();
  const { layout, sources } = await listFaceSources(run.src, st.seed, log);
  if (sources.some((s) => s.kind === 'video')) {
    await execFileP('ffmpeg', ['-version']).catch(() => {
      throw new Error("ffmpeg is not on PATH (needed for videos); run 'bash scripts/setup.sh' or 'apt-get install ffmpeg'");
    });
  }
  refuseOutInsideSrc(out, run.src);
  makeRunDir(out);
  checkSettings(out, st, run.src);
  const { done, owners } = resumeState(out);
  const ctx: SourceContext = { owners, read: { timeoutS: run.readTimeoutS ?? READ_TIMEOUT_S, signal: run.stop?.signal } };
  const todo = sources.filter((s) => !done.has(s.key));
  const res: FacesResult = { layout, sources: sources.length, skipped: sources.length - todo.length, crops: 0, frames: 0, failed: [], seconds: 0, detectSeconds: 0, landmarkSeconds: 0 };
  const bar = run.quiet ? null : new Progress({ total: todo.length, label: 'faces', unit: 'src' });
  // Frames are staged in OUT (same disk as the crops); a killed run's staging folders are removed here.
  for (const d of fs.readdirSync(out)) if (d.startsWith('.frames-')) fs.rmSync(path.join(out, d), { recursive: true, force: true });
  const tmp = path.join(out, `.frames-${process.pid}`);
  try {
    for (const s of todo) {
      if (run.stop?.stop) break;
      try {
        const r = await oneSource(s, run, tmp, res, ctx);
        if (r === null) break;
        appendJsonlSync(path.join(out, FACES_FILES.done), r);
      } catch (e) {
        if (e instanceof Stopped) break;
        if (isDiskFull(e)) throw diskFull(out, `cropping ${s.file}`);
        if (!(e instanceof UnreadableSource)) throw e;
        res.failed.push(s.key);
        log(`faces: ${s.file}: ${(e as Error).message.split('\n')[0]}; skipped`);
      }
      bar?.tick();
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    bar?.done();
  }
  res.seconds = (performance.now() - t0) / 1000;
  return res;
}

interface SourceContext {
  /** Crop file (relative to OUT) -> the source that wrote it, for the finished sources and this run's. */
  owners: Map<string, string>;
  read: ReadOptions;
}

/** Crops one source; returns its done record, or null when a stop was requested mid-source. */
async function oneSource(s: FaceSource, run: FacesRun, tmp: string, res: FacesResult, ctx: SourceContext): Promise<DoneRecord | null> {
  const st = run.settings;
  const frames = await framesOf(s, st, tmp, ctx.read);
  const records: FaceIndexRecord[] = [];
  const label = s.label ? 'fake' : 'real';
  const dir = path.join(run.out, s.split, label);
  let nFrames = 0;
  for (const f of frames) {
    if (st.perVideo > 0 && records.length >= st.perVideo) break;
    if (run.stop?.stop) return null;
    let img: RgbImage;
    try {
      img = await readImage(f.file, ctx.read);
    } catch (e) {
      if (e instanceof Stopped || e instanceof UnreadableSource) throw e;
      throw new UnreadableSource(`frame ${f.frame} cannot be decoded (${(e as Error).message.split('\n')[0]})`);
    }
    const t = performance.now();
    const [faces] = await run.detector.detect([img], { minConfidence: st.minConfidence });
    res.detectSeconds += (performance.now() - t) / 1000;
    nFrames++;
    for (const [j, face] of pickFaces(faces, st.pick).entries()) {
      if (st.perVideo > 0 && records.length >= st.perVideo) break;
      const r1 = (v: number) => Math.round(v * 10) / 10;
      let crop: RgbImage;
      let aligned: Pick<FaceIndexRecord, 'landmarks' | 'eyes' | 'angle'> = {};
      if (st.align) {
        const t1 = performance.now();
        // The landmark net sees the square around the detection box (margin 1), as face-api feeds it the box.
        const rect = faceRect(face, img, 1);
        const [pts] = await run.landmarks!.detect([cropImage(img, rect)]);
        res.landmarkSeconds += (performance.now() - t1) / 1000;
        const framePts = pts.map(([x, y]): Point => [x + rect.left, y + rect.top]);
        const a = eyeAlignment(framePts);
        crop = alignedCrop(img, a, st.size);
        const p1 = ([x, y]: Point): Point => [r1(x), r1(y)];
        aligned = { landmarks: framePts.map(p1), eyes: [p1(a.eyes[0]), p1(a.eyes[1])], angle: Math.round(a.angle * 100) / 100 };
      } else {
        crop = resizeRgb(cropImage(img, faceRect(face, img, st.margin)), st.size, st.size);
      }
      const name = cropName(s.key, f.frame, j);
      const rel = [s.split, label, name].join('/');
      const owner = ctx.owners.get(rel);
      if (owner !== undefined && owner !== s.key) throw new Error(`faces: crop ${rel} of ${s.key} would overwrite the crop of ${owner}; nothing was overwritten`);
      ctx.owners.set(rel, s.key);
      await writePng(path.join(dir, name), crop);
      records.push({
        source: s.key,
        frame: f.frame,
        face: j,
        box: [r1(face.x), r1(face.y), r1(face.width), r1(face.height)],
        score: Math.round(face.score * 1e4) / 1e4,
        file: rel,
        split: s.split,
        label,
        ...aligned,
      });
    }
  }
  for (const r of records) appendJsonlSync(path.join(run.out, FACES_FILES.index), r);
  res.crops += records.length;
  res.frames += nFrames;
  return { source: s.key, crops: records.length, frames: nFrames };
}

// `ticketlab faces` end to end on videos made here with ffmpeg from a face-api sample photo:
// - a panning window over a face, and a zoom into it, give one crop per sampled frame, and each crop's
//   box is that face, the whole face inside the square crop;
// - a tiny FaceForensics++-shaped tree (official split files, one unreadable video) goes through
//   `ticketlab faces`, resumes after a simulated kill, and then trains for one epoch with `ticketlab train`;
// - a real SIGKILL mid-run, then the same command again: finished videos are skipped, the rest done once.
// Needs ffmpeg (scripts/setup.sh installs it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { imageSize } from '../../src/data/image.js';
import { iou } from '../../src/faces/boxes.js';
import { faceRect } from '../../src/faces/crop.js';
import { FaceDetector } from '../../src/faces/detector.js';
import { FACES_FILES, extractFaces, type FaceIndexRecord } from '../../src/faces/extract.js';
import { defaultModelDir } from '../../src/faces/ssd-mobilenet.js';
import { budget } from '../budget.js';

const ROOT = path.resolve(__dirname, '..', '..');
const SAMPLE = path.join(path.dirname(defaultModelDir()), 'demo', 'sample1.jpg');
const fixture = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'fixtures', 'faces', 'ssd_mobilenetv1.json'), 'utf8')) as {
  cases: { image: string; crop?: unknown; faces: { box: [number, number, number, number] }[] }[];
};
// The left face of sample1 as face-api finds it on the whole photo.
const FACE = fixture.cases.find((c) => c.image === 'sample1.jpg' && !c.crop)!.faces.map((f) => f.box).sort((a, b) => a[0] - b[0])[0];
const WINDOW = { w: 560, h: 480, x0: 200, y0: 150, dx: 8, dy: 4 };

let tmp: string;

/** A video whose frame n shows the window at (x0 + dx * n, y0 + dy * n) of sample1: a pan over FACE. */
function panVideo(file: string, frames: number, shift = 0): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const w = WINDOW;
  execFileSync('ffmpeg', [
    '-v', 'error', '-y', '-framerate', '5', '-loop', '1', '-i', SAMPLE,
    '-vf', `crop=w=${w.w}:h=${w.h}:x='${w.x0 + shift}+${w.dx}*n':y='${w.y0}+${w.dy}*n'`,
    '-frames:v', String(frames), '-pix_fmt', 'yuv420p', file,
  ]);
}

/** Runs the CLI without blocking the worker (a blocked worker misses vitest's RPC deadlines). */
function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'bin', 'ticketlab.mjs'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: budget(300_000) }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

function index(out: string): FaceIndexRecord[] {
  return fs.readFileSync(path.join(out, FACES_FILES.index), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as FaceIndexRecord);
}

beforeAll(() => {
  const probe = spawnSync('ffmpeg', ['-version']);
  if (probe.status !== 0) throw new Error("these tests need ffmpeg on PATH: run 'bash scripts/setup.sh'");
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-faces-'));
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// Detections take seconds each on lavapipe and much longer on a loaded machine.
describe('ticketlab faces', { timeout: budget(600_000) }, () => {
  it('crops the panned face from every sampled frame of a video', async () => {
    const src = path.join(tmp, 'pan');
    panVideo(path.join(src, 'real', 'pan.mp4'), 6);
    const out = path.join(tmp, 'pan-out');
    const det = new FaceDetector();
    const settings = { every: 2, perVideo: 0, pick: 'largest' as const, margin: 1.3, size: 64, minConfidence: 0.5, seed: 0, align: false };
    const r = await extractFaces({ src, out, settings, detector: det, quiet: true });
    det.dispose();
    expect(r.failed).toEqual([]);
    const recs = index(out);
    expect(recs.map((x) => x.frame)).toEqual([0, 2, 4]);
    for (const rec of recs) {
      // Back to photo pixels: add the window's offset at that frame.
      const [x, y, w, h] = rec.box;
      const photoBox = { x: x + WINDOW.x0 + WINDOW.dx * rec.frame, y: y + WINDOW.y0 + WINDOW.dy * rec.frame, width: w, height: h };
      const face = { x: FACE[0], y: FACE[1], width: FACE[2], height: FACE[3] };
      expect(iou(photoBox, face), `frame ${rec.frame}`).toBeGreaterThan(0.5);
      const [cx, cy] = [FACE[0] + FACE[2] / 2, FACE[1] + FACE[3] / 2];
      expect(cx > photoBox.x && cx < photoBox.x + w && cy > photoBox.y && cy < photoBox.y + h, `frame ${rec.frame}: face centre in box`).toBe(true);
      // The crop (the 1.3x square extract.ts cuts around the detection) holds face-api's whole face box.
      const r = faceRect({ x, y, width: w, height: h, score: rec.score }, { width: WINDOW.w, height: WINDOW.h }, settings.margin);
      const [fx, fy] = [FACE[0] - WINDOW.x0 - WINDOW.dx * rec.frame, FACE[1] - WINDOW.y0 - WINDOW.dy * rec.frame];
      expect(r.width, `frame ${rec.frame}: square crop`).toBe(r.height);
      expect([r.left <= fx, r.top <= fy, r.left + r.width >= fx + FACE[2], r.top + r.height >= fy + FACE[3]], `frame ${rec.frame}: face inside the crop`).toEqual([true, true, true, true]);
      expect(await imageSize(path.join(out, rec.file))).toEqual({ width: 64, height: 64 });
    }
  });

  it('crops the zoomed-in face from every sampled frame of a video, the box growing with the zoom', async () => {
    // Frame n shows the (1920 / z) x (1280 / z) region of sample1 centred on FACE, z = 2.6 + 0.3 n, scaled
    // to 480 x 320 (ffmpeg's zoompan: region size truncated, corner truncated to even for yuv420).
    const src = path.join(tmp, 'zoom');
    const file = path.join(src, 'fake', 'zoom.mp4');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const [fcx, fcy] = [FACE[0] + FACE[2] / 2, FACE[1] + FACE[3] / 2];
    const zoom = (n: number) => 2.6 + 0.3 * n;
    execFileSync('ffmpeg', [
      '-v', 'error', '-y', '-i', SAMPLE,
      '-vf', `zoompan=z='2.6+0.3*on':x='${fcx}-iw/zoom/2':y='${fcy}-ih/zoom/2':d=3:s=480x320`,
      '-frames:v', '3', '-pix_fmt', 'yuv420p', file,
    ]);
    const out = path.join(tmp, 'zoom-out');
    const det = new FaceDetector();
    const settings = { every: 1, perVideo: 0, pick: 'largest' as const, margin: 1.3, size: 64, minConfidence: 0.5, seed: 0, align: false };
    const r = await extractFaces({ src, out, settings, detector: det, quiet: true });
    det.dispose();
    expect(r.failed).toEqual([]);
    const recs = index(out);
    expect(recs.map((x) => x.frame)).toEqual([0, 1, 2]);
    for (const rec of recs) {
      // face-api's box on the photo, in this frame's pixels.
      const z = zoom(rec.frame);
      const [vw, vh] = [Math.floor(1920 / z), Math.floor(1280 / z)];
      const [x0, y0] = [Math.floor(fcx - 1920 / z / 2) & ~1, Math.floor(fcy - 1280 / z / 2) & ~1];
      const [sx, sy] = [480 / vw, 320 / vh];
      const want = { x: (FACE[0] - x0) * sx, y: (FACE[1] - y0) * sy, width: FACE[2] * sx, height: FACE[3] * sy };
      const [x, y, w, h] = rec.box;
      expect(iou({ x, y, width: w, height: h }, want), `frame ${rec.frame}`).toBeGreaterThan(0.7);
      const c = faceRect({ x, y, width: w, height: h, score: rec.score }, { width: 480, height: 320 }, settings.margin);
      expect(c.width, `frame ${rec.frame}: square crop`).toBe(c.height);
      expect([c.left <= want.x, c.top <= want.y, c.left + c.width >= want.x + want.width, c.top + c.height >= want.y + want.height], `frame ${rec.frame}: face inside the crop`).toEqual([true, true, true, true]);
    }
    // The detected face grows with the zoom (3.2 / 2.6 from the first frame to the last).
    expect(recs[2].box[3] / recs[0].box[3]).toBeGreaterThan((zoom(2) / zoom(0)) * 0.9);
    expect(recs[2].box[3] / recs[0].box[3]).toBeLessThan((zoom(2) / zoom(0)) * 1.1);
  });

  it('turns a FaceForensics++ tree into a --data folder, resumes, skips a broken video, and trains on it', async () => {
    const ff = path.join(tmp, 'ffpp');
    const orig = path.join(ff, 'original_sequences', 'youtube', 'c23', 'videos');
    const fake = path.join(ff, 'manipulated_sequences', 'Deepfakes', 'c23', 'videos');
    ['000', '002', '004'].forEach((id, k) => panVideo(path.join(orig, `${id}.mp4`), 2, 4 * k));
    ['000_001', '002_003', '004_005'].forEach((id, k) => panVideo(path.join(fake, `${id}.mp4`), 2, 4 * k + 2));
    fs.writeFileSync(path.join(orig, '006.mp4'), 'not a video');
    fs.mkdirSync(path.join(ff, 'splits'));
    const splits = { train: [['000', '001']], val: [['002', '003']], test: [['004', '005'], ['006', '007']] };
    for (const [s, pairs] of Object.entries(splits)) fs.writeFileSync(path.join(ff, 'splits', `${s}.json`), JSON.stringify(pairs));

    const out = path.join(tmp, 'ffpp-faces');
    const args = ['faces', ff, '--out', out, '--every', '1', '--per-video', '1', '--quiet'];
    const first = await cli(...args, '--size', '48');
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^faceforensics: 7 sources \(0 already done\), 6 frames, 6 face crops/);
    expect(first.stdout).toMatch(/1 unreadable source\(s\) skipped/);
    expect(first.stderr).toMatch(/006\.mp4: ffmpeg cannot read it: .*; skipped/);
    const recs = index(out);
    expect(recs.map((r) => `${r.split}/${r.label}/${r.source.split('/').pop()}`).sort()).toEqual([
      'test/fake/004_005.mp4', 'test/real/004.mp4', 'train/fake/000_001.mp4', 'train/real/000.mp4', 'val/fake/002_003.mp4', 'val/real/002.mp4',
    ]);
    for (const r of recs) expect(fs.existsSync(path.join(out, r.file))).toBe(true);

    // A kill after a source's index lines but before its done line: that source alone is redone.
    const doneFile = path.join(out, FACES_FILES.done);
    const done = fs.readFileSync(doneFile, 'utf8').trim().split('\n');
    fs.writeFileSync(doneFile, done.slice(0, -1).join('\n') + '\n');
    const again = await cli(...args, '--size', '48');
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/7 sources \(5 already done\), 1 frames, 1 face crops/);
    expect(index(out).map((r) => r.file).sort()).toEqual(recs.map((r) => r.file).sort());
    const other = await cli(...args, '--size', '32');
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/holds crops made with size=48, not 32/);

    const run = path.join(tmp, 'run');
    const train = await cli('train', '--model', 'meso4', '--data', out, '--size', '32', '--epochs', '1', '--batch', '2', '--patience', '0', '--out', run, '--quiet');
    expect(train.status, train.stderr).toBe(0);
    expect(train.stderr).toMatch(/train 2, val 2, test 2/);
    expect(fs.existsSync(path.join(run, 'level_0', 'result.json'))).toBe(true);
  });

  it('resumes after a real SIGKILL: finished videos are skipped, the rest done once, no staging left', async () => {
    const src = path.join(tmp, 'kill');
    ['a', 'b', 'c'].forEach((n, k) => panVideo(path.join(src, 'real', `${n}.mp4`), 2, 4 * k));
    const out = path.join(tmp, 'kill-out');
    const args = ['faces', src, '--out', out, '--every', '1', '--size', '32', '--quiet'];
    const doneFile = path.join(out, FACES_FILES.done);
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'ticketlab.mjs'), ...args], { cwd: ROOT, stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // Killed as soon as the first video is finished, somewhere inside the second one.
    const t0 = Date.now();
    while (!(fs.existsSync(doneFile) && fs.readFileSync(doneFile, 'utf8').includes('\n')) && Date.now() - t0 < budget(300_000)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    await exited;
    const before = fs.readFileSync(doneFile, 'utf8').trim().split('\n').filter(Boolean).length;
    expect(before).toBeGreaterThanOrEqual(1);
    expect(before).toBeLessThan(3);
    // The killed run's frame staging folder is still there; the next run removes it.
    expect(fs.readdirSync(out).filter((d) => d.startsWith('.frames-'))).toEqual([`.frames-${child.pid}`]);
    const again = await cli(...args);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`^folder: 3 sources \\(${before} already done\\), ${2 * (3 - before)} frames, ${2 * (3 - before)} face crops`));
    // One index line per sampled frame of each video, none twice; every crop on disk; no staging folder.
    expect(index(out).map((r) => `${r.source}@${r.frame}`).sort()).toEqual(['a', 'b', 'c'].flatMap((n) => [0, 1].map((f) => `real/${n}.mp4@${f}`)));
    for (const r of index(out)) expect(fs.existsSync(path.join(out, r.file))).toBe(true);
    expect(fs.readdirSync(out).filter((d) => d.startsWith('.frames-'))).toEqual([]);
  });

  it('explains its flags and rejects bad ones in one line', async () => {
    const help = await cli('faces', '--help');
    expect(help.stdout).toMatch(/--per-video N/);
    expect(help.stdout).toMatch(/--align .*eye-level/);
    const bad = await cli('faces', tmp, '--out', path.join(tmp, 'x'), '--faces', 'some');
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim()).toBe("ticketlab: --faces 'some' is not one of largest, all");
  });
});

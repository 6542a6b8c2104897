// `ticketlab faces` against a hostile, unlucky user (issue 20): sources whose safe names agree, FIFOs and
// devices named like videos and photos, an ffmpeg that never returns, a full disk, SIGTERM mid-video,
// --out inside the source, and SRC pointing at a real/ folder itself.
// Most cases need no GPU: the refusals come before the detector runs, and a fake `ffmpeg` on PATH
// stands in for a blocked or failing one. The name-collision case detects real faces.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { FaceDetector } from '../../src/faces/detector.js';
import { FACES_FILES, cropName, extractFaces, type FaceIndexRecord, type FacesSettings } from '../../src/faces/extract.js';
import { listFaceSources } from '../../src/faces/sources.js';
import { defaultModelDir } from '../../src/faces/ssd-mobilenet.js';
import { budget } from '../budget.js';

const ROOT = path.resolve(__dirname, '..', '..');
const SAMPLE = path.join(path.dirname(defaultModelDir()), 'demo', 'sample1.jpg');
const SETTINGS: FacesSettings = { every: 1, perVideo: 0, pick: 'largest', margin: 1.3, size: 32, minConfidence: 0.5, seed: 0, align: false };
/** Never called: every case that passes it fails before detection. */
const NO_DETECTOR = {} as FaceDetector;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-faces-hostile-'));
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function mkdir(...parts: string[]): string {
  const d = path.join(tmp, ...parts);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

function fifo(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  execFileSync('mkfifo', [file]);
}

/** A fake `ffmpeg` first on PATH: answers -version, and otherwise runs `body` (a shell snippet). */
function fakeFfmpeg(name: string, body: string): string {
  const bin = mkdir(name);
  fs.writeFileSync(path.join(bin, 'ffmpeg'), `#!/bin/sh\nif [ "$1" = "-version" ]; then echo "ffmpeg version fake"; exit 0; fi\n${body}\n`, { mode: 0o755 });
  return bin;
}

async function withPath<T>(bin: string, fn: () => Promise<T>): Promise<T> {
  const old = process.env.PATH;
  process.env.PATH = `${bin}${path.delimiter}${old}`;
  try {
    return await fn();
  } finally {
    process.env.PATH = old;
  }
}

/** Whether `pid` runs; a zombie (killed, not yet reaped by an init that never reaps) counts as gone. */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

describe('crop names', () => {
  it('differ for sources whose names differ only in extension or in a space against an underscore', () => {
    const keys = ['real/x.jpg', 'real/x.png', 'real/p q.jpg', 'real/p_q.jpg', 'real/p_q.JPG', 'real/a/b.jpg', 'real/a_b.jpg'];
    expect(new Set(keys.map((k) => cropName(k, 0, 0))).size).toBe(keys.length);
  });

  it('are one file name per (source, frame, face), and distinct sources never share one (property)', () => {
    const part = fc.stringMatching(/^[a-zA-Z _.-]{1,6}$/);
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 3 }), fc.array(part, { minLength: 1, maxLength: 3 }), fc.nat(999), (a, b, frame) => {
        const ka = a.join('/');
        const kb = b.join('/');
        const na = cropName(ka, frame, 0);
        expect(na).not.toContain('/');
        expect(na).toMatch(/\.png$/);
        if (ka !== kb) expect(na).not.toBe(cropName(kb, frame, 0));
      }),
      { numRuns: 300 },
    );
  });
});

describe('sources that are not regular files', () => {
  it('a FIFO named .mp4 or .jpg, and /dev/zero behind a .jpg name, are refused up front in one line', async () => {
    for (const [name, make, what] of [
      ['v.mp4', fifo, /is a FIFO \(named pipe\), not a regular file/],
      ['p.jpg', fifo, /is a FIFO \(named pipe\), not a regular file/],
      ['z.jpg', (f: string) => fs.symlinkSync('/dev/zero', f), /is a character device, not a regular file/],
    ] as const) {
      const src = mkdir(`nonregular-${name}`);
      make(path.join(mkdir(`nonregular-${name}`, 'real'), name));
      const err = await listFaceSources(src).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message, name).toMatch(what);
      expect(err?.message, name).toContain(path.join(src, 'real', name));
      expect(err?.message).not.toContain('\n');
    }
  });
});

describe('labels', () => {
  it("come from SRC's own trailing real/fake and split folders", async () => {
    const src = mkdir('own', 'data', 'train', 'real');
    fs.writeFileSync(path.join(src, 'a.jpg'), 'x');
    const { sources } = await listFaceSources(src);
    expect(sources.map((s) => [s.key, s.label, s.split])).toEqual([['a.jpg', 0, 'train']]);
    // An unrelated folder further up labels nothing.
    const plain = mkdir('own', 'real', 'mydata');
    fs.writeFileSync(path.join(plain, 'b.jpg'), 'x');
    await expect(listFaceSources(plain)).rejects.toThrow(/no real\/ or fake\/ folder on its path/);
  });
});

describe('--out', () => {
  it('equal to the source, or inside it, is refused before anything is written', async () => {
    const src = mkdir('outin', 'src');
    fs.mkdirSync(path.join(src, 'real'));
    fs.writeFileSync(path.join(src, 'real', 'a.jpg'), 'x');
    for (const out of [src, path.join(src, 'crops'), path.join(src, 'real', '..', 'crops', 'deeper')]) {
      await expect(extractFaces({ src, out, settings: SETTINGS, detector: NO_DETECTOR, quiet: true, log: () => {} })).rejects.toThrow(
        /^--out .* is (the source folder|inside the source folder .*): the next run would read its own crops as sources/,
      );
    }
    expect(fs.readdirSync(src)).toEqual(['real']);
    // Through a symlink to the source, too.
    const link = path.join(tmp, 'outin', 'link');
    fs.symlinkSync(src, link);
    await expect(extractFaces({ src, out: path.join(link, 'x'), settings: SETTINGS, detector: NO_DETECTOR, quiet: true, log: () => {} })).rejects.toThrow(/inside the source folder/);
  });

  it('on /proc is refused at once, not spun on', async () => {
    if (!fs.existsSync('/proc/self')) return;
    const src = mkdir('proc', 'src', 'real');
    fs.writeFileSync(path.join(src, 'a.jpg'), 'x');
    await expect(extractFaces({ src: path.dirname(src), out: '/proc/x', settings: SETTINGS, detector: NO_DETECTOR, quiet: true, log: () => {} })).rejects.toThrow(
      /^--out \/proc\/x: \/proc is on procfs/,
    );
  });
});

describe('ffmpeg', () => {
  it('that never returns is killed at the --read-timeout deadline, and the video is reported and skipped', async () => {
    const bin = fakeFfmpeg('bin-hang', 'exec sleep 100000');
    const src = mkdir('hang', 'src', 'real');
    fs.writeFileSync(path.join(src, 'v.mp4'), 'not really a video');
    const lines: string[] = [];
    const r = await withPath(bin, () =>
      extractFaces({ src: path.dirname(src), out: path.join(tmp, 'hang', 'out'), settings: SETTINGS, detector: NO_DETECTOR, quiet: true, log: (m) => lines.push(m), readTimeoutS: 1 }),
    );
    expect(r.failed).toEqual(['real/v.mp4']);
    expect(lines.join('\n')).toMatch(/v\.mp4: ffmpeg did not finish reading it within 1 s \(--read-timeout\); skipped/);
  });

  it('on a full disk is named as a full disk, not as an unreadable video', async () => {
    const bin = fakeFfmpeg('bin-full', 'echo "[image2 @ 0x1] Could not write frame: No space left on device" >&2; exit 1');
    const src = mkdir('full', 'src', 'real');
    fs.writeFileSync(path.join(src, 'v.mp4'), 'x');
    const out = path.join(tmp, 'full', 'out');
    await expect(withPath(bin, () => extractFaces({ src: path.dirname(src), out, settings: SETTINGS, detector: NO_DETECTOR, quiet: true, log: () => {} }))).rejects.toThrow(
      /^faces: the disk holding .*out is full \(no space left on device\) while cropping .*v\.mp4; free some space and rerun/,
    );
  });

  it('SIGTERM ends `ticketlab faces` and kills its ffmpeg child', async () => {
    const pidFile = path.join(tmp, 'sigterm-ffmpeg.pid');
    const bin = fakeFfmpeg('bin-sigterm', `echo $$ > '${pidFile}'\nexec sleep 100000`);
    const src = mkdir('sigterm', 'src', 'real');
    fs.writeFileSync(path.join(src, 'v.mp4'), 'x');
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'ticketlab.mjs'), 'faces', path.dirname(src), '--out', path.join(tmp, 'sigterm', 'out'), '--quiet'], {
      cwd: ROOT,
      env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Wait (event-driven, no deadline of our own) until the fake ffmpeg is running.
    while (!fs.existsSync(pidFile) || !fs.readFileSync(pidFile, 'utf8').trim()) {
      if (child.exitCode !== null) throw new Error(`faces exited early: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const ffmpegPid = Number(fs.readFileSync(pidFile, 'utf8'));
    child.kill('SIGTERM');
    const code = await exited;
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/interrupt: stopping after the current frame/);
    expect(stderr).toMatch(/interrupted: rerun the same command to continue/);
    expect(pidAlive(ffmpegPid), 'ffmpeg outlived faces').toBe(false);
  });
});

describe('name collisions end to end', { timeout: budget(600_000) }, () => {
  it('x.jpg, x.png, "p q.jpg" and p_q.jpg give four crops in four files', async () => {
    const src = mkdir('collide', 'src');
    // One split folder, so all four land in one crop folder (seeded splits could separate them).
    const real = mkdir('collide', 'src', 'train', 'real');
    // A small face photo keeps detection cheap: the left face of sample1, as JPEG and PNG.
    const region = { left: 230, top: 150, width: 320, height: 320 };
    await sharp(SAMPLE).extract(region).jpeg().toFile(path.join(real, 'x.jpg'));
    await sharp(SAMPLE).extract(region).png().toFile(path.join(real, 'x.png'));
    fs.copyFileSync(path.join(real, 'x.jpg'), path.join(real, 'p q.jpg'));
    fs.copyFileSync(path.join(real, 'x.jpg'), path.join(real, 'p_q.jpg'));
    const out = path.join(tmp, 'collide', 'out');
    const det = new FaceDetector();
    try {
      const r = await extractFaces({ src, out, settings: { ...SETTINGS, seed: 0 }, detector: det, quiet: true, log: () => {} });
      expect(r.failed).toEqual([]);
    } finally {
      det.dispose();
    }
    const recs = fs.readFileSync(path.join(out, FACES_FILES.index), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as FaceIndexRecord);
    expect(recs.map((x) => x.source).sort()).toEqual(['train/real/p q.jpg', 'train/real/p_q.jpg', 'train/real/x.jpg', 'train/real/x.png']);
    expect(new Set(recs.map((x) => x.file)).size).toBe(4);
    for (const rec of recs) expect(fs.existsSync(path.join(out, rec.file)), rec.file).toBe(true);
  });
});

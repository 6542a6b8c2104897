// `ticketlab faces`: face crops from raw videos and photos. Flags and checks here; the work is
// src/faces/extract.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { closeDevice, initDevice, deviceName } from '../tensor/device.js';
import { FACE_PICKS, type FacePick } from '../faces/crop.js';
import { DEFAULT_MIN_CONFIDENCE, FaceDetector } from '../faces/detector.js';
import { ALIGN_EYE_DISTANCE, ALIGN_EYE_Y } from '../faces/align.js';
import { FACES_FILES, extractFaces } from '../faces/extract.js';
import { FaceLandmark68Net } from '../faces/landmarks.js';
import { parseFlags, type Command } from './args.js';
import { num } from './flags.js';
import { installStopSignal } from './signals.js';

const log = (m: string) => process.stderr.write(m + '\n');

const FLAGS = {
  out: { type: 'string' },
  every: { type: 'string', default: '10' },
  'per-video': { type: 'string', default: '0' },
  faces: { type: 'string', default: 'largest' },
  margin: { type: 'string', default: '1.3' },
  size: { type: 'string', default: '256' },
  'min-score': { type: 'string', default: String(DEFAULT_MIN_CONFIDENCE) },
  seed: { type: 'string', default: '0' },
  align: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
} as const;

export const facesCommand: Command = {
  name: 'faces',
  summary: 'detect and crop faces from videos / photos / FF++ / Celeb-DF into a --data folder',
  help: `ticketlab faces SRC --out DIR [--every 10] [--per-video N] [--faces largest|all] [--margin 1.3]
                [--size 256] [--min-score 0.5] [--align] [--seed 0] [--quiet]

Finds faces with an SSD-MobileNet-v1 face detector running on ticketlab's own WebGPU kernels (weights
from the @vladmandic/face-api package, MIT licence; see docs/faces.md) and writes square face crops in
the image-folder layout that '--data DIR' reads:
  DIR/{train,val,test}/{real,fake}/<source>_f<frame>_<k>.png
  DIR/${FACES_FILES.index}        one line per crop: source, frame, face, box [x, y, w, h] in source pixels,
                       score, file (relative to DIR), split, label; with --align also landmarks
                       (68 [x, y] in source pixels), eyes (two [x, y]) and angle (degrees)
  DIR/${FACES_FILES.done}   finished sources (resume)
  DIR/${FACES_FILES.config}  the settings (resuming with other settings is an error)

SRC is one of (detected from its folders):
  FaceForensics++     original_sequences/ and manipulated_sequences/ (videos/*.mp4 or extracted images/);
                      split by the official splits/{train,val,test}.json when present, else by identity
                      (seeded, 72/14/14); labels: original = real, manipulated = fake
  Celeb-DF (v1/v2)    Celeb-real/, YouTube-real/ (real), Celeb-synthesis/ (fake); test = the videos in
                      List_of_testing_videos.txt, the rest split 85/15 into train/val by identity (id<N>)
  any folder          videos (mp4/avi/mov/mkv/webm) and images (jpg/png/bmp/webp) below it, labelled by a
                      real/ or fake/ folder on their path (a file without one is an error); split by a
                      train/, val/ (validation/) or test/ folder on the path, else by file (seeded, 72/14/14)
Videos are read through ffmpeg (installed by scripts/setup.sh).

Flags:
  --out DIR          output folder (required); rerunning with the same DIR resumes: finished sources
                     are skipped, an interrupted one is redone
  --every K          every K-th frame of a video or frame folder, from frame 0 (default 10)
  --per-video N      at most N crops per video (and per photo), from the first 4N sampled frames of a
                     video; 0 = no limit (default 0)
  --faces M          largest: the largest face of each frame (default); all: every face found
  --margin X         crop side = X * the longer side of the face box, centred on it; at the frame's
                     border the square is shifted inside the frame, not clipped (default 1.3)
  --size PX          crops are resized to PX x PX (default 256)
  --min-score X      detector score threshold in (0, 1) (default ${DEFAULT_MIN_CONFIDENCE}, as face-api)
  --align            eye-level crops: face-api's 68-point landmark net (also on ticketlab's kernels) runs on
                     the square around each detection box; the crop is rotated about the eye midpoint so
                     the eyes are level, on the row ${ALIGN_EYE_Y * 100}% of --size from the top, ${ALIGN_EYE_DISTANCE * 100}% of --size
                     apart (eye centres = means of points 36-41 and 42-47); bilinear sampling from the
                     whole frame, black outside it. --margin does not apply to aligned crops
  --seed N           seeds the splits ticketlab makes itself (default 0)
  --quiet            no progress bar

Frames are staged as PNGs in DIR/.frames-<pid>/ while a video is processed. Frames without a face give
no crop. A video ffmpeg cannot read, or an image that does not decode, is
reported in one line and skipped; the count is printed at the end and the next run retries it.
`,
  async run(args) {
    const { values, positionals } = parseFlags(args, FLAGS, 'faces');
    if (positionals.length !== 1) throw new Error("faces: give exactly one SRC folder; see 'ticketlab faces --help'");
    if (!values.out) throw new Error("faces: --out DIR is required; see 'ticketlab faces --help'");
    const pick = values.faces as FacePick;
    if (!FACE_PICKS.includes(pick)) throw new Error(`--faces '${values.faces}' is not one of ${FACE_PICKS.join(', ')}`);
    const settings = {
      every: num(values, 'every', { int: true, min: 1 }),
      perVideo: num(values, 'per-video', { int: true, min: 0 }),
      pick,
      margin: num(values, 'margin', { min: 1, max: 10 }),
      size: num(values, 'size', { int: true, min: 8, max: 4096 }),
      minConfidence: num(values, 'min-score', { min: 1e-6, max: 0.999999 }),
      seed: num(values, 'seed', { int: true, min: 0 }),
      align: values.align,
    };
    const src = positionals[0];
    if (!fs.existsSync(src) || !fs.statSync(src).isDirectory()) throw new Error(`${src}: no such folder`);
    const dev = await initDevice();
    if (!values.quiet) log(`device: ${deviceName(dev.info)}`);
    const signal = installStopSignal(log);
    const detector = new FaceDetector();
    const landmarks = settings.align ? new FaceLandmark68Net() : undefined;
    try {
      const r = await extractFaces({ src, out: values.out, settings, detector, landmarks, log, quiet: values.quiet, stop: signal });
      const fps = r.detectSeconds > 0 ? (r.frames / r.detectSeconds).toFixed(2) : '-';
      const lps = settings.align && r.landmarkSeconds > 0 ? `, landmarks ${(r.crops / r.landmarkSeconds).toFixed(2)} faces/s` : '';
      process.stdout.write(
        `${r.layout}: ${r.sources} sources (${r.skipped} already done), ${r.frames} frames, ${r.crops} face crops, ` +
          `detection ${fps} frames/s${lps}, ${r.seconds.toFixed(1)} s\n` +
          (r.failed.length ? `${r.failed.length} unreadable source(s) skipped (listed above); rerun to retry them\n` : '') +
          `crops in ${path.join(values.out)}/ (index ${FACES_FILES.index})\n`,
      );
      if (signal.stop) {
        log(`interrupted: rerun the same command to continue`);
        return 130;
      }
      return 0;
    } finally {
      detector.dispose();
      landmarks?.dispose();
      signal.dispose();
      closeDevice();
    }
  },
};

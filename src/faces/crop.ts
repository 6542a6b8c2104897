// From detections to crops: which faces to keep and the square-with-margin rectangle around each.
// Also the FaceCropper the data loaders take (data/ knows no GPU, so the detector is injected from here).
import { centreSquare, type FaceCropper } from '../data/datasets.js';
import type { Rect, RgbImage } from '../data/image.js';
import type { FaceBox } from './boxes.js';
import { FaceDetector } from './detector.js';

export type FacePick = 'largest' | 'all';
export const FACE_PICKS: readonly FacePick[] = ['largest', 'all'];

/** The faces to keep, largest (by box area) first; ties by score. */
export function pickFaces(faces: readonly FaceBox[], pick: FacePick): FaceBox[] {
  const sorted = [...faces].sort((a, b) => b.width * b.height - a.width * a.height || b.score - a.score);
  return pick === 'largest' ? sorted.slice(0, 1) : sorted;
}

/**
 * Square of side round(max(w, h) * margin) centred on the face. Near the frame's border the square is
 * shifted inside the frame instead of clipped (the OpenForensics loader's cropRect clips, as that
 * dataset's reference preprocessing does): a clipped rectangle, resized to size x size, would squash the
 * face, while the shifted square keeps it undistorted and whole, only off centre. A square larger than
 * the frame's shorter side shrinks to that side.
 */
export function faceRect(f: FaceBox, img: { width: number; height: number }, margin: number): Rect {
  const side = Math.max(1, Math.min(Math.round(Math.max(f.width, f.height) * margin), img.width, img.height));
  const at = (centre: number, extent: number) => Math.min(Math.max(Math.round(centre - side / 2), 0), extent - side);
  return { left: at(f.x + f.width / 2, img.width), top: at(f.y + f.height / 2, img.height), width: side, height: side };
}

/**
 * A FaceCropper for the FF++ loader: the largest face at `minConfidence` with `margin`, or the centre
 * square when the frame has no face (a frame is never dropped: the loader's sample list is fixed).
 */
export function detectorCropper(det: FaceDetector, opts: { margin?: number; minConfidence?: number } = {}): FaceCropper {
  const margin = opts.margin ?? 1.3;
  const detect = async (img: RgbImage) => (await det.detect([img], { minConfidence: opts.minConfidence }))[0];
  const crop: FaceCropper = async (img: RgbImage) => {
    const [f] = pickFaces(await detect(img), 'largest');
    return f ? faceRect(f, img, margin) : centreSquare(img);
  };
  // Every face with the same square (the OpenForensics loader matches them to its annotations).
  crop.faces = async (img: RgbImage) =>
    (await detect(img)).map((f) => ({ box: { x: f.x, y: f.y, width: f.width, height: f.height }, crop: faceRect(f, img, margin) }));
  return crop;
}

let shared: Promise<FaceCropper> | null = null;

/**
 * One detector-based cropper per process, made on first use (the GPU device must be open by then).
 * The CLI hands this to data/ through provideFaceCropper.
 */
export function sharedDetectorCropper(): Promise<FaceCropper> {
  shared ??= Promise.resolve().then(() => detectorCropper(new FaceDetector()));
  return shared;
}

// From detections to crops: which faces to keep and the square-with-margin rectangle around each.
// Also the FaceCropper the data loaders take (data/ knows no GPU, so the detector is injected from here).
import { cropRect, centreSquare, type FaceCropper } from '../data/datasets.js';
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

/** Square of side max(w, h) * margin centred on the face, clipped to the image (data/dataset-openforensics.ts cropRect). */
export function faceRect(f: FaceBox, img: { width: number; height: number }, margin: number): Rect {
  return cropRect([f.x, f.y, f.width, f.height], img.width, img.height, margin);
}

/**
 * A FaceCropper for the FF++ loader: the largest face at `minConfidence` with `margin`, or the centre
 * square when the frame has no face (a frame is never dropped: the loader's sample list is fixed).
 */
export function detectorCropper(det: FaceDetector, opts: { margin?: number; minConfidence?: number } = {}): FaceCropper {
  return async (img: RgbImage) => {
    const [faces] = await det.detect([img], { minConfidence: opts.minConfidence });
    const [f] = pickFaces(faces, 'largest');
    return f ? faceRect(f, img, opts.margin ?? 1.3) : centreSquare(img);
  };
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

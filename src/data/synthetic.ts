// Synthetic "deepfake" faces: a procedural stand-in for OpenForensics/FF++ that needs no download, so that
// training, pruning and Grad-CAM can be exercised end to end (and in CI) with a known ground truth: the
// blend mask says exactly where the manipulation is.
//
// A real image is one rendered face scene. A fake imitates a face swap: the inner face of another identity
// is rendered, degraded (down/up-sampling), aligned to the target's face frame with a small warp error,
// colour-corrected only partly, and alpha-blended through a feathered ellipse. Camera effects and sensor
// noise are applied afterwards to real and fake alike, as a camera/codec would, so the only label signal is
// the blend itself (blur, seam, colour and lighting mismatch inside the mask).
//
// Everything is drawn in normalised coordinates [0,1]^2, so one (seed, split, index) gives the same face at
// 64, 128 or 256 pixels, and every random draw is keyed by (seed, split, index), so sample i does not depend
// on which samples were generated before it.
import * as path from "node:path";
import { chwToRgb, writePng, type RgbImage } from "./image.js";
import { hashKey, Rng } from "./random.js";
import { drawScene, lerp, normalize3, renderFaceScene } from "./synthetic-render.js";
import { applyCamera, drawSwap, faceSwap } from "./synthetic-swap.js";

export type SplitName = "train" | "val" | "test";
export const SPLITS: readonly SplitName[] = ["train", "val", "test"];

export interface SyntheticOptions {
  seed?: number;
  /** image side in pixels (default 64) */
  size?: number;
  /** 0 = blatant swap artefacts, 1 = subtle ones (default 0.5) */
  difficulty?: number;
  /** images per split; defaults train 2000, val 400, test 400 */
  count?: Partial<Record<SplitName, number>>;
}

export interface SyntheticSample {
  /** CHW float32 in [0,1], 3 x size x size */
  image: Float32Array;
  /** 1 = fake */
  label: 0 | 1;
  /** size x size blend weight of the swapped face, all zero for real images */
  mask: Float32Array;
  size: number;
}

export interface SyntheticRgbSample {
  image: RgbImage;
  label: 0 | 1;
  mask: Float32Array;
}

const SPLIT_ID: Record<SplitName, number> = { train: 1, val: 2, test: 3 };
const DEFAULT_COUNT: Record<SplitName, number> = { train: 2000, val: 400, test: 400 };

// Sub-streams of one sample's key.
const STREAM_TARGET = 1;
const STREAM_DONOR = 2;
const STREAM_SWAP = 3;
const STREAM_CAMERA = 4;

export class SyntheticDeepfakes {
  readonly seed: number;
  readonly size: number;
  readonly difficulty: number;
  readonly counts: Readonly<Record<SplitName, number>>;

  constructor(opts: SyntheticOptions = {}) {
    this.seed = opts.seed ?? 0;
    this.size = opts.size ?? 64;
    this.difficulty = opts.difficulty ?? 0.5;
    if (!Number.isInteger(this.size) || this.size < 8) throw new Error(`synthetic: size must be an integer >= 8, got ${this.size}`);
    if (!(this.difficulty >= 0 && this.difficulty <= 1)) throw new Error(`synthetic: difficulty must be in [0,1], got ${this.difficulty}`);
    const counts = { ...DEFAULT_COUNT };
    for (const s of SPLITS) {
      const c = opts.count?.[s];
      if (c !== undefined) {
        if (!Number.isInteger(c) || c < 0) throw new Error(`synthetic: count.${s} must be a non-negative integer, got ${c}`);
        counts[s] = c;
      }
    }
    this.counts = counts;
  }

  length(split: SplitName): number {
    return this.counts[split];
  }

  /** Odd indices are fakes: exactly balanced for even counts, and known without rendering. */
  label(split: SplitName, i: number): 0 | 1 {
    this.check(split, i);
    return (i & 1) as 0 | 1;
  }

  /** Render sample i of a split (at `size`, default the generator's size). */
  sample(split: SplitName, i: number, size: number = this.size): SyntheticSample {
    const label = this.label(split, i);
    const key = hashKey(this.seed, SPLIT_ID[split], i);
    const { image, mask } = renderSample(key, label, size, this.difficulty);
    return { image, label, mask, size };
  }

  sampleRgb(split: SplitName, i: number, size: number = this.size): SyntheticRgbSample {
    const s = this.sample(split, i, size);
    return { image: chwToRgb(s.image, size, size), label: s.label, mask: s.mask };
  }

  /**
   * Write every split as `<root>/<split>/{real,fake}/NNNNN.png` (NNNNN = the sample index), the image-folder
   * layout that `openDataset` reads, so a synthetic set can be inspected or fed to other tools.
   */
  async writeImageFolder(root: string, opts: { concurrency?: number } = {}): Promise<{ written: number }> {
    const concurrency = Math.max(1, opts.concurrency ?? 4);
    let written = 0;
    for (const split of SPLITS) {
      const n = this.length(split);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < n) {
          const i = next++;
          const s = this.sampleRgb(split, i);
          const file = path.join(root, split, s.label ? "fake" : "real", `${String(i).padStart(5, "0")}.png`);
          await writePng(file, s.image);
          written++;
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
    }
    return { written };
  }

  private check(split: SplitName, i: number): void {
    if (!(split in SPLIT_ID)) throw new Error(`synthetic: unknown split ${String(split)}`);
    if (!Number.isInteger(i) || i < 0 || i >= this.counts[split]) {
      throw new RangeError(`synthetic: index ${i} out of range for ${split} (length ${this.counts[split]})`);
    }
  }
}


/** One sample, fully determined by its key. Exposed for tests and benchmarks. */
export function renderSample(key: number, label: 0 | 1, size: number, difficulty: number): { image: Float32Array; mask: Float32Array } {
  const target = drawScene(new Rng(hashKey(key, STREAM_TARGET)));
  const cv = renderFaceScene(target, size);
  let mask: Float32Array;
  if (label === 1) {
    const donorScene = drawScene(new Rng(hashKey(key, STREAM_DONOR)));
    const sw = drawSwap(new Rng(hashKey(key, STREAM_SWAP)), difficulty);
    // Face swaps reproduce the donor's shading only partly re-lit to the target's scene.
    donorScene.light = normalize3([
      lerp(donorScene.light[0], target.light[0], sw.lightMatch),
      lerp(donorScene.light[1], target.light[1], sw.lightMatch),
      lerp(donorScene.light[2], target.light[2], sw.lightMatch),
    ]);
    donorScene.ambient = lerp(donorScene.ambient, target.ambient, sw.lightMatch);
    const donor = renderFaceScene(donorScene, size, true);
    mask = faceSwap(cv, target.frame, donor, donorScene.frame, sw);
  } else {
    mask = new Float32Array(size * size);
  }
  applyCamera(cv, new Rng(hashKey(key, STREAM_CAMERA)), difficulty);
  return { image: cv.rgb, mask };
}

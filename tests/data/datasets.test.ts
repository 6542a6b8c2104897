import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CropModeError, boxIoU, classCounts, cropRect, detectLayout, evenlySpaced, frameGroup, matchDetections, openDataset,
  type Dataset, type DatasetSplits, type FaceCropper,
} from "../../src/data/datasets.js";
import { cropImage, decodeImage, resizeRgb, toCHWFloat, UnreadableImageError, writePng, type RgbImage } from "../../src/data/image.js";
import { DataLoader } from "../../src/data/loader.js";
import { openTrainingData } from "../../src/cli/prepare.js";
import { detectorCropper } from "../../src/faces/crop.js";
import { FaceDetector } from "../../src/faces/detector.js";
import { defaultModelDir } from "../../src/faces/ssd-mobilenet.js";
import { budget } from '../budget.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "ticketlab-ds-"));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function solid(w: number, h: number, v: number): RgbImage {
  return { width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).fill(v) };
}

async function touchImage(file: string, v = 100, w = 8, h = 8): Promise<void> {
  if (file.endsWith(".jpg") || file.endsWith(".jpeg")) {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await sharp({ create: { width: w, height: h, channels: 3, background: { r: v, g: v, b: v } } }).jpeg().toFile(file);
  } else {
    await writePng(file, solid(w, h, v));
  }
}

async function tree(name: string, files: string[]): Promise<string> {
  const root = path.join(tmp, name);
  await Promise.all(files.map((f) => touchImage(path.join(root, f))));
  return root;
}

const quiet = { warn: (): void => undefined };

function allGroups(ds: Dataset): Set<string> {
  const s = new Set<string>();
  for (let i = 0; i < ds.length(); i++) s.add(ds.group(i));
  return s;
}

describe("image-folder layout", () => {
  it("reads the Kaggle OpenForensics layout (Dataset/{Train,Validation,Test}/{Fake,Real})", async () => {
    const root = await tree("kaggle-of", [
      "Dataset/Train/Real/real_1.jpg", "Dataset/Train/Real/real_2.jpg", "Dataset/Train/Fake/fake_1.jpg",
      "Dataset/Validation/Real/a.jpg", "Dataset/Validation/Fake/b.jpg",
      "Dataset/Test/Fake/c.jpg", "Dataset/Test/Fake/d.jpg", "Dataset/Test/Real/e.jpg",
    ]);
    const det = await detectLayout(root);
    expect(det).toEqual({ layout: "image-folder", base: path.join(root, "Dataset") });
    const ds = await openDataset(root, { size: 12, ...quiet });
    expect(ds.layout).toBe("image-folder");
    expect([ds.train.length(), ds.val.length(), ds.test.length()]).toEqual([3, 2, 3]);
    expect(classCounts(ds.train)).toEqual({ real: 2, fake: 1 });
    expect(classCounts(ds.test)).toEqual({ real: 1, fake: 2 });
    const s = await ds.train.get(0);
    expect(s.image.length).toBe(3 * 12 * 12);
    expect(s.label).toBe(ds.train.label(0));
    expect(s.path).toMatch(/\.jpg$/);
    // Opening Dataset/ itself works too.
    const inner = await openDataset(path.join(root, "Dataset"), { size: 12, ...quiet });
    expect(inner.train.length()).toBe(3);
  });

  it("reads the Kaggle FF++ frame layout and groups frames by video", async () => {
    const root = await tree("kaggle-ff", [
      "train/real/000_0001.png", "train/real/000_0002.png", "train/real/001_0001.png",
      "train/fake/000_003_0001.png", "train/fake/000_003_0002.png",
      "validation/real/002_0001.png", "validation/fake/002_004_0001.png",
      "test/real/005_0001.png", "test/fake/005_006_0007.png",
    ]);
    const ds = await openDataset(root, { size: 8, ...quiet });
    expect([ds.train.length(), ds.val.length(), ds.test.length()]).toEqual([5, 2, 2]);
    expect(allGroups(ds.train)).toEqual(new Set(["real/000", "real/001", "fake/000_003"]));
    expect(frameGroup("x/000_003_0012.png")).toBe("000_003");
    expect(frameGroup("x/plainname.jpg")).toBe("plainname");
  });

  it("matches split and class names case-insensitively (train/TRAIN, val/Validation, real/REAL)", async () => {
    const root = await tree("cases", [
      "TRAIN/REAL/a.png", "TRAIN/fake/b.PNG", "Val/Real/c.jpeg", "val/FAKE/ignored-dup-split.png", "testing/Fake/d.png",
      "TRAIN/other/not-a-class.png", "TRAIN/REAL/notes.txt",
    ]);
    const warnings: string[] = [];
    const ds = await openDataset(root, { size: 8, warn: (m) => warnings.push(m) });
    expect(ds.train.length()).toBe(2);
    expect(ds.test.length()).toBe(1);
    // "Val" and "val" both exist only on case-sensitive file systems; both are read, with a warning.
    const valDirs = (await fs.readdir(root)).filter((d) => d.toLowerCase() === "val");
    expect(ds.val.length()).toBe(valDirs.length === 2 ? 2 : 1);
    if (valDirs.length === 2) expect(warnings.some((w) => w.includes("several folders"))).toBe(true);
  });

  it("holds out a validation split by group when the layout has none", async () => {
    const files: string[] = [];
    for (let v = 0; v < 30; v++) for (let f = 0; f < 3; f++) files.push(`train/real/${String(v).padStart(3, "0")}_${f}.png`);
    files.push("test/real/x.png");
    const root = await tree("noval", files);
    const warnings: string[] = [];
    const ds = await openDataset(root, { size: 4, seed: 1, holdoutFraction: 0.3, warn: (m) => warnings.push(m) });
    expect(ds.train.length() + ds.val.length()).toBe(90);
    expect(ds.val.length()).toBeGreaterThan(0);
    expect(ds.val.length() % 3).toBe(0);
    const tr = allGroups(ds.train);
    for (const g of allGroups(ds.val)) expect(tr.has(g)).toBe(false);
    expect(warnings.some((w) => w.includes("no val folder"))).toBe(true);
  });

  it("surfaces an unreadable file as UnreadableImageError naming it", async () => {
    const root = await tree("bad", ["train/real/good.png", "test/fake/x.png"]);
    await fs.writeFile(path.join(root, "train/real/zz-bad.png"), "nope");
    const ds = await openDataset(root, { size: 4, ...quiet });
    expect(ds.train.length()).toBe(2);
    const err = await ds.train.get(1).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnreadableImageError);
    expect((err as Error).message).toContain("zz-bad.png");
  });
});

describe("end to end", () => {
  it("a corrupt file in an image folder is skipped by the loader, not fatal", async () => {
    const root = await tree("e2e", ["train/real/a.png", "train/fake/b.png", "train/fake/c.png", "test/real/d.png"]);
    await fs.writeFile(path.join(root, "train/real/broken.jpg"), Buffer.alloc(100, 0xff));
    const ds = await openDataset(root, { size: 6, ...quiet });
    const warnings: string[] = [];
    const dl = new DataLoader(ds.train, { batchSize: 2, seed: 0, warn: (m) => warnings.push(m) });
    let n = 0;
    for await (const b of dl.epoch(0)) n += b.n;
    expect(n).toBe(3);
    expect(dl.skipped).toBe(1);
    expect(warnings[0]).toContain("broken.jpg");
  });
});

describe("openDataset errors and specs", () => {
  it("names the path when no layout is recognised or the path is missing", async () => {
    const root = await tree("unknown", ["photos/a.png"]);
    await expect(openDataset(root)).rejects.toThrow(root);
    await expect(openDataset(root)).rejects.toThrow(/no known dataset layout/);
    const missing = path.join(tmp, "does-not-exist");
    await expect(openDataset(missing)).rejects.toThrow(`dataset path not found: ${missing}`);
    const file = path.join(root, "photos/a.png");
    await expect(openDataset(file)).rejects.toThrow(/is a file/);
  });

  it("opens synthetic specs", async () => {
    const ds = await openDataset("synthetic:difficulty=0.2,train=6,val=2,test=4,seed=3", { size: 16 });
    expect(ds.layout).toBe("synthetic");
    expect([ds.train.length(), ds.val.length(), ds.test.length()]).toEqual([6, 2, 4]);
    const s = await ds.test.get(1);
    expect(s.label).toBe(1);
    expect(s.image.length).toBe(3 * 16 * 16);
    await expect(openDataset("synthetic:bogus=1")).rejects.toThrow(/unknown key 'bogus'/);
  });
});

describe("OpenForensics (COCO)", () => {
  it("computes clipped square crops around boxes", () => {
    expect(cropRect([30, 20, 20, 10], 100, 80)).toEqual({ left: 27, top: 12, width: 26, height: 26 });
    expect(cropRect([90, 70, 10, 10], 100, 80)).toEqual({ left: 89, top: 69, width: 11, height: 11 });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 300 }),
        fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0.01, max: 1, noNaN: true }), fc.double({ min: 0.01, max: 1, noNaN: true }),
        (W, H, fx, fy, fw, fh) => {
          const x = fx * (W - 1), y = fy * (H - 1);
          const w = Math.max(0.5, fw * (W - x)), h = Math.max(0.5, fh * (H - y));
          const r = cropRect([x, y, w, h], W, H);
          expect(r.left).toBeGreaterThanOrEqual(0);
          expect(r.top).toBeGreaterThanOrEqual(0);
          expect(r.width).toBeGreaterThanOrEqual(1);
          expect(r.height).toBeGreaterThanOrEqual(1);
          expect(r.left + r.width).toBeLessThanOrEqual(W);
          expect(r.top + r.height).toBeLessThanOrEqual(H);
          const side = Math.max(w, h) * 1.3;
          expect(r.width).toBeLessThanOrEqual(Math.round(side) + 1);
          // Unclipped crops are square.
          const cx = x + w / 2, cy = y + h / 2;
          if (cx - side / 2 >= 0 && cy - side / 2 >= 0 && cx + side / 2 <= W - 1 && cy + side / 2 <= H - 1) {
            expect(Math.abs(r.width - r.height)).toBeLessThanOrEqual(1);
            expect(Math.abs(r.width - side)).toBeLessThanOrEqual(1);
          }
        }),
      { numRuns: 300 },
    );
  });

  it("crops one sample per annotation from the photo and caches crops", async () => {
    const root = path.join(tmp, "of");
    // R encodes x, G encodes y, so a crop's first pixel tells where it was taken from.
    const W = 100, H = 80;
    const data = new Uint8Array(W * H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      data[(y * W + x) * 3] = x * 2;
      data[(y * W + x) * 3 + 1] = y * 3;
      data[(y * W + x) * 3 + 2] = 7;
    }
    await writePng(path.join(root, "Images/Train/abc.png"), { width: W, height: H, channels: 3, data });
    const coco = {
      images: [{ id: 5, file_name: "abc.png", width: W, height: H }],
      annotations: [
        { id: 11, image_id: 5, category_id: 1, bbox: [30, 20, 20, 10], iscrowd: 0, segmentation: [[0, 0]] },
        { id: 12, image_id: 5, category_id: 0, bbox: [90, 70, 10, 10], iscrowd: 0 },
        { id: 13, image_id: 99, category_id: 0, bbox: [1, 1, 5, 5] },
      ],
      categories: [{ id: 0, name: "Real" }, { id: 1, name: "Fake" }],
    };
    await fs.writeFile(path.join(root, "Train_poly.json"), JSON.stringify(coco));
    await fs.writeFile(path.join(root, "Test-Dev_poly.json"), JSON.stringify({ ...coco, annotations: [] }));
    expect((await detectLayout(root))?.layout).toBe("openforensics");
    const warnings: string[] = [];
    const ds: DatasetSplits = await openDataset(root, { size: 26, seed: 0, holdoutFraction: 0.5, decodedCache: false, warn: (m) => warnings.push(m) });
    expect(ds.layout).toBe("openforensics");
    expect(warnings.some((w) => w.includes("1 annotations"))).toBe(true);
    expect(ds.test.length()).toBe(0);
    // Both faces come from one photo, so the held-out val split takes both or neither.
    const all = ds.train.length() ? ds.train : ds.val;
    expect(all.length()).toBe(2);
    expect(all.label(0)).toBe(1);
    expect(all.label(1)).toBe(0);
    const first = await all.get(0);
    // Crop {27,12,26x26} at size 26: no resampling, so pixel (0,0) is photo pixel (27,12).
    expect(Math.round(first.image[0] * 255)).toBe(54);
    expect(Math.round(first.image[26 * 26] * 255)).toBe(36);
    // Named by the annotation and a hash of the photo's identity and box (data/decoded.ts cropCacheName).
    const cacheDir = path.join(root, ".ticketlab-cache", "26", "openforensics", "Train");
    expect((await fs.readdir(cacheDir)).filter((n) => /^11-[0-9a-f]{16}\.png$/.test(n))).toHaveLength(1);
    const again = await all.get(0);
    expect(Buffer.from(again.image.buffer).equals(Buffer.from(first.image.buffer))).toBe(true);
    // Border box: clipped 11x11 crop stretched to 26x26 starts at photo pixel (89,69).
    const border = await all.get(1);
    expect(Math.round(border.image[0] * 255)).toBeGreaterThanOrEqual(178 - 2);
    expect(Math.round(border.image[26 * 26] * 255)).toBeGreaterThanOrEqual(207 - 3);
  });
});

describe("OpenForensics with the face detector (--crop face)", { timeout: budget(600_000) }, () => {
  it("matches boxes greedily by IoU, one detection per annotation", () => {
    expect(boxIoU([0, 0, 10, 10], [5, 0, 10, 10])).toBeCloseTo(1 / 3);
    // Detection 0 overlaps both annotations; the better pair wins, annotation 1 takes detection 1.
    expect(matchDetections([[0, 0, 10, 10], [2, 0, 10, 10]], [[1, 0, 10, 10], [3, 0, 10, 10]])).toEqual([0, 1]);
    expect(matchDetections([[0, 0, 10, 10], [1, 0, 10, 10]], [[1, 0, 10, 10]])).toEqual([-1, 0]);
    expect(matchDetections([[0, 0, 10, 10]], [[6, 0, 10, 10]])).toEqual([-1]);
  });

  it("crops the matched detections, falls back to the box where none matches, and caches per mode", async () => {
    const root = path.join(tmp, "of-faces");
    // face-api's sample1 at half size; its three faces (tests/fixtures/faces) annotated Fake, Real, Fake,
    // and a fourth Real "face" in the top-left corner, where there is none.
    const full = await decodeImage(path.join(path.dirname(defaultModelDir()), "demo", "sample1.jpg"));
    const photo = resizeRgb(full, full.width / 2, full.height / 2);
    await writePng(path.join(root, "Images/Train/s1.png"), photo);
    const fixture = JSON.parse(await fs.readFile(path.join(__dirname, "../fixtures/faces/ssd_mobilenetv1.json"), "utf8")) as
      { cases: Array<{ image: string; faces: Array<{ box: number[] }> }> };
    const boxes = fixture.cases.find((c) => c.image === "sample1.jpg" && c.faces.length === 3)!.faces
      .map((f) => f.box.map((v) => Math.round(v / 2)) as [number, number, number, number]);
    const annBoxes = [...boxes, [10, 10, 80, 80] as [number, number, number, number]];
    const labels = [1, 0, 1, 0];
    const coco = {
      images: [{ id: 1, file_name: "s1.png", width: photo.width, height: photo.height }],
      annotations: annBoxes.map((b, k) => ({ id: k + 1, image_id: 1, category_id: labels[k], bbox: b })),
      categories: [{ id: 0, name: "Real" }, { id: 1, name: "Fake" }],
    };
    await fs.writeFile(path.join(root, "Train_poly.json"), JSON.stringify(coco));
    for (const s of ["Val", "Test-Dev"]) await fs.writeFile(path.join(root, `${s}_poly.json`), JSON.stringify({ ...coco, annotations: [] }));
    const S = 160;
    const det = new FaceDetector();
    const cropper = detectorCropper(det, { margin: 1.3 });
    let calls = 0;
    const faces = cropper.faces!;
    const counted: FaceCropper = Object.assign(async (img: RgbImage) => cropper(img), { faces: (img: RgbImage) => (calls++, faces(img)) });
    const warnings: string[] = [];
    const ds = await openDataset(root, { size: S, crop: "face", decodedCache: false, openforensics: { faceCrop: counted }, warn: (m) => warnings.push(m) });
    expect(ds.train.length()).toBe(4);
    const samples: Array<Awaited<ReturnType<Dataset["get"]>>> = [];
    for (let i = 0; i < 4; i++) samples.push(await ds.train.get(i));
    // Labels follow the annotations; the detector ran once for the photo's four faces.
    expect(samples.map((x) => x.label)).toEqual(labels);
    expect(calls).toBe(1);
    const dets = await faces(photo);
    const match = matchDetections(annBoxes, dets.map((d) => [d.box.x, d.box.y, d.box.width, d.box.height] as const));
    expect(match.slice(0, 3).every((j) => j >= 0)).toBe(true);
    expect(match[3]).toBe(-1);
    for (let k = 0; k < 3; k++) {
      const r = dets[match[k]].crop;
      expect(r.width).toBe(r.height);
      expect(Array.from(samples[k].image)).toEqual(Array.from(toCHWFloat(resizeRgb(cropImage(photo, r), S, S), S)));
      // The crop's face box is the annotated face, and the crop holds all of the annotated box.
      const d = dets[match[k]].box;
      expect(boxIoU([d.x, d.y, d.width, d.height], annBoxes[k])).toBeGreaterThan(0.5);
      const [x, y, w, h] = annBoxes[k];
      expect(boxIoU([r.left, r.top, r.width, r.height], annBoxes[k]) * (r.width * r.height) / (w * h)).toBeGreaterThan(0.95);
      expect(r.left <= x + w / 2 && x + w / 2 <= r.left + r.width && r.top <= y + h / 2 && y + h / 2 <= r.top + r.height).toBe(true);
    }
    // The faceless annotation falls back to its box crop and is counted, in one warning once all are loaded.
    const boxCrop = toCHWFloat(resizeRgb(cropImage(photo, cropRect(annBoxes[3], photo.width, photo.height)), S, S), S);
    expect(Array.from(samples[3].image)).toEqual(Array.from(boxCrop));
    expect(warnings.filter((w) => w.includes("matched no detected face"))).toEqual([expect.stringContaining("1 of 4 annotated faces")]);
    // Per-mode caches: detector crops under openforensics-faces/ (the fallback marked .box.png) ...
    const cache = path.join(root, ".ticketlab-cache", String(S));
    expect(await fs.readdir(cache)).toEqual(["openforensics-faces"]);
    const unhashed = (names: string[]) => names.map((n) => n.replace(/-[0-9a-f]{16}\./, ".")).sort();
    expect(unhashed(await fs.readdir(path.join(cache, "openforensics-faces", "Train")))).toEqual(["1.png", "2.png", "3.png", "4.box.png"]);
    // ... reused without the detector, fallback still counted; box mode never reads them.
    const w2: string[] = [];
    const again = await openDataset(root, { size: S, decodedCache: false, openforensics: { faceCrop: Object.assign(async () => ({ left: 0, top: 0, width: 1, height: 1 }), { faces: async () => { throw new Error("detector called despite the cache"); } }) }, warn: (m) => w2.push(m) });
    for (let i = 0; i < 4; i++) expect(Array.from((await again.train.get(i)).image)).toEqual(Array.from(samples[i].image));
    expect(w2.some((w) => w.includes("1 of 4 annotated faces"))).toBe(true);
    const box = await openDataset(root, { size: S, crop: "box", decodedCache: false, openforensics: { faceCrop: counted }, ...quiet });
    const b0 = await box.train.get(0);
    expect(Array.from(b0.image)).toEqual(Array.from(toCHWFloat(resizeRgb(cropImage(photo, cropRect(annBoxes[0], photo.width, photo.height)), S, S), S)));
    expect(Array.from(b0.image)).not.toEqual(Array.from(samples[0].image));
    expect(b0.label).toBe(1);
    expect(calls).toBe(1);
    expect((await fs.readdir(cache)).sort()).toEqual(["openforensics", "openforensics-faces"]);
    // With the decoded cache (the default), the same faces come from one pass per photo into shards.
    const shardWarnings: string[] = [];
    const viaShards = await openDataset(root, { size: S, crop: "face", openforensics: { faceCrop: counted }, warn: (m) => shardWarnings.push(m) });
    for (let i = 0; i < 4; i++) expect(Array.from((await viaShards.train.get(i)).image)).toEqual(Array.from(samples[i].image));
    expect(calls).toBe(2);
    expect(shardWarnings.filter((w) => w.includes("1 of 4 annotated faces"))).toHaveLength(1);
    det.dispose();
  });

  it("a --crop mode the dataset lacks is a one-line error naming the flag", async () => {
    const root = path.join(tmp, "of-badcrop");
    await writePng(path.join(root, "Images/Train/x.png"), solid(40, 30, 90));
    const coco = {
      images: [{ id: 1, file_name: "x.png" }],
      annotations: [{ id: 1, image_id: 1, category_id: 0, bbox: [5, 5, 10, 10] }],
      categories: [{ id: 0, name: "Real" }, { id: 1, name: "Fake" }],
    };
    await fs.writeFile(path.join(root, "Train_poly.json"), JSON.stringify(coco));
    await expect(openDataset(root, { crop: "centre", ...quiet })).rejects.toBeInstanceOf(CropModeError);
    const spec = { data: root, size: 8, train: { seed: 0 } } as Parameters<typeof openTrainingData>[0];
    const err = await openTrainingData({ ...spec, crop: "centre" }).then(() => null, (e: Error) => e.message);
    expect(err).toBe(`--crop centre does not apply to an OpenForensics release (--data ${root}); use face or box`);
    const ff = await tree("ff-badcrop", ["original_sequences/youtube/c23/images/000/0000.png"]);
    const err2 = await openTrainingData({ ...spec, data: ff, crop: "box" }).then(() => null, (e: Error) => e.message);
    expect(err2).toBe(`--crop box does not apply to a FaceForensics++ release (--data ${ff}); use face or centre`);
  });
});

describe("OpenForensics file_name variants", () => {
  it("accepts file names relative to the root", async () => {
    const root = path.join(tmp, "of-rel");
    await writePng(path.join(root, "Images/Val/sub/x.png"), solid(40, 30, 90));
    const coco = {
      images: [{ id: 1, file_name: "Images/Val/sub/x.png" }],
      annotations: [{ id: 1, image_id: 1, category_id: 0, bbox: [5, 5, 10, 10] }],
      categories: [{ id: 0, name: "Real" }, { id: 1, name: "Fake" }],
    };
    await fs.writeFile(path.join(root, "Val_poly.json"), JSON.stringify(coco));
    await fs.writeFile(path.join(root, "Train_poly.json"), JSON.stringify({ ...coco, annotations: [] }));
    await fs.writeFile(path.join(root, "Test-Dev_poly.json"), JSON.stringify({ ...coco, annotations: [] }));
    const ds = await openDataset(root, { size: 8, ...quiet });
    expect(ds.val.length()).toBe(1);
    const s = await ds.val.get(0);
    expect(s.path).toBe(path.join(root, "Images/Val/sub/x.png"));
    expect(Math.round(s.image[0] * 255)).toBe(90);
  });
});

describe("FaceForensics++", () => {
  const ids = Array.from({ length: 10 }, (_, i) => String(i).padStart(3, "0"));
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < 10; i += 2) pairs.push([ids[i], ids[i + 1]], [ids[i + 1], ids[i]]);

  async function ffTree(name: string): Promise<string> {
    const files: string[] = [];
    for (const id of ids) for (let f = 0; f < 3; f++) files.push(`original_sequences/youtube/c23/images/${id}/${String(f).padStart(4, "0")}.png`);
    for (const m of ["Deepfakes", "FaceSwap"]) {
      for (const [t, s] of pairs) for (let f = 0; f < 3; f++) files.push(`manipulated_sequences/${m}/c23/images/${t}_${s}/${String(f).padStart(4, "0")}.png`);
    }
    return tree(name, files);
  }

  async function idsOf(ds: Dataset): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < ds.length(); i++) {
      const m = /images\/([\d_]+)\//.exec((await ds.get(i)).path ?? "");
      if (m) for (const id of m[1].split("_")) out.add(id);
    }
    return out;
  }

  async function expectDisjoint(ds: DatasetSplits): Promise<void> {
    const sets = [await idsOf(ds.train), await idsOf(ds.val), await idsOf(ds.test)];
    for (let a = 0; a < 3; a++) for (let b = a + 1; b < 3; b++) for (const id of sets[a]) expect(sets[b].has(id)).toBe(false);
    const groups = [allGroups(ds.train), allGroups(ds.val), allGroups(ds.test)];
    for (let a = 0; a < 3; a++) for (let b = a + 1; b < 3; b++) for (const g of groups[a]) expect(groups[b].has(g)).toBe(false);
  }

  it("splits by the official pair lists, by video, never by frame", async () => {
    const root = await ffTree("ffpp");
    await fs.mkdir(path.join(root, "splits"), { recursive: true });
    await fs.writeFile(path.join(root, "splits/train.json"), JSON.stringify([["000", "001"], ["002", "003"]]));
    await fs.writeFile(path.join(root, "splits/val.json"), JSON.stringify([["004", "005"]]));
    await fs.writeFile(path.join(root, "splits/test.json"), JSON.stringify([["006", "007"]]));
    const warnings: string[] = [];
    const ds = await openDataset(root, { size: 8, faceforensics: { framesPerVideo: 2 }, warn: (m) => warnings.push(m) });
    expect(ds.layout).toBe("faceforensics");
    expect(await idsOf(ds.train)).toEqual(new Set(["000", "001", "002", "003"]));
    expect(await idsOf(ds.val)).toEqual(new Set(["004", "005"]));
    expect(await idsOf(ds.test)).toEqual(new Set(["006", "007"]));
    // train: 4 real videos + 2 methods x 4 fake videos, 2 frames each
    expect(classCounts(ds.train)).toEqual({ real: 8, fake: 16 });
    expect(warnings.some((w) => w.includes("in no official split"))).toBe(true);
    await expectDisjoint(ds);
    const s = await ds.train.get(0);
    expect(s.image.length).toBe(3 * 64);
  });

  it("falls back to a seeded split by identity group without split files", async () => {
    const root = await ffTree("ffpp-nosplit");
    const a = await openDataset(root, { size: 8, seed: 4, faceforensics: { framesPerVideo: 3, methods: ["Deepfakes"] }, ...quiet });
    await expectDisjoint(a);
    expect(a.train.length() + a.val.length() + a.test.length()).toBe((10 + 10) * 3);
    // The seed is chosen so that the check is not vacuous: some groups land outside train.
    expect(a.val.length() + a.test.length()).toBeGreaterThan(0);
    expect(a.train.length()).toBeGreaterThan(0);
    const b = await openDataset(root, { size: 8, seed: 4, faceforensics: { framesPerVideo: 3, methods: ["Deepfakes"] }, ...quiet });
    expect(await idsOf(b.train)).toEqual(await idsOf(a.train));
    await expect(openDataset(root, { faceforensics: { methods: ["NoSuchMethod"] }, ...quiet })).rejects.toThrow(/NoSuchMethod/);
  });

  it("extracts frames from videos through ffmpeg once, centre-cropped and cached", async () => {
    const root = path.join(tmp, "ffpp-videos");
    const bin = path.join(tmp, "fakebin");
    await fs.mkdir(bin, { recursive: true });
    // A 2:1 frame whose left and right quarters differ from the centre: the centre crop must drop them.
    const W = 16, H = 8;
    const frame = new Uint8Array(W * H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) frame.fill(x < 4 || x >= 12 ? 0 : 200, (y * W + x) * 3, (y * W + x) * 3 + 3);
    const template = path.join(bin, "frame.png");
    await writePng(template, { width: W, height: H, channels: 3, data: frame });
    // Stub ffprobe/ffmpeg: report 12 frames; write one PNG per selected frame to the output pattern.
    const log = path.join(bin, "calls.log");
    await fs.writeFile(path.join(bin, "ffprobe"), "#!/bin/sh\necho 12\n", { mode: 0o755 });
    await fs.writeFile(path.join(bin, "ffmpeg"), [
      "#!/bin/sh",
      `echo call >> '${log}'`,
      'vf=""; out=""',
      'while [ $# -gt 0 ]; do case "$1" in -vf) vf="$2";; esac; out="$1"; shift; done',
      "n=$(printf '%s' \"$vf\" | grep -o 'eq(' | wc -l)",
      "k=1; while [ $k -le $n ]; do cp '" + template + "' \"$(printf \"$out\" $k)\"; k=$((k+1)); done",
      "",
    ].join("\n"), { mode: 0o755 });
    for (const rel of ["original_sequences/youtube/c23/videos/000.mp4", "original_sequences/youtube/c23/videos/001.mp4",
      "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4", "manipulated_sequences/Deepfakes/c23/videos/001_000.mp4"]) {
      await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
      await fs.writeFile(path.join(root, rel), "not really a video");
    }
    const opts = { size: 4, seed: 0, faceforensics: { framesPerVideo: 3, ffmpeg: path.join(bin, "ffmpeg") }, ...quiet };
    const ds = await openDataset(root, opts);
    const all = [ds.train, ds.val, ds.test].find((d) => d.length() > 0) as Dataset;
    expect(ds.train.length() + ds.val.length() + ds.test.length()).toBe(4 * 3);
    expect(all.length()).toBe(12); // the pair 000/001 is one identity group: one split holds everything
    const samples = await Promise.all(Array.from({ length: all.length() }, (_, i) => all.get(i)));
    for (const s of samples) expect(s.image.every((v) => Math.abs(v - 200 / 255) < 1e-6)).toBe(true);
    expect((await fs.readFile(log, "utf8")).trim().split("\n").length).toBe(4); // one ffmpeg run per video
    // One folder per video, named by the video's identity (data/decoded.ts cropCacheName).
    const videoDir = path.join(root, ".ticketlab-cache/4/ffpp/manipulated_sequences/Deepfakes/c23/000_001");
    const named = await fs.readdir(videoDir);
    expect(named.length).toBe(1);
    const cached = await fs.readdir(path.join(videoDir, named[0]));
    expect(cached.sort()).toEqual(["0000.png", "0001.png", "0002.png"]);
    // Without ffmpeg, cached frames still count.
    const again = await openDataset(root, { ...opts, faceforensics: { framesPerVideo: 3, ffmpeg: path.join(bin, "missing") } });
    expect(again.train.length() + again.val.length() + again.test.length()).toBe(12);
  });

  it("picks evenly spaced frames", () => {
    expect(evenlySpaced(10, 2)).toEqual([2, 7]);
    expect(evenlySpaced(3, 5)).toEqual([0, 1, 2]);
    fc.assert(fc.property(fc.integer({ min: 1, max: 500 }), fc.integer({ min: 1, max: 60 }), (total, n) => {
      const idx = evenlySpaced(total, n);
      expect(idx.length).toBe(Math.min(total, n));
      for (let k = 1; k < idx.length; k++) expect(idx[k]).toBeGreaterThan(idx[k - 1]);
      expect(idx[0]).toBeGreaterThanOrEqual(0);
      expect(idx[idx.length - 1]).toBeLessThan(total);
    }));
  });
});

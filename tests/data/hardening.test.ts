// Datasets a careless or hostile user hands us (issue 14): symlink loops and links between classes are
// followed once and reported, empty and one-class splits are one-line errors (an empty validation
// folder is replaced by a held-out part of train, with a warning), synthetic counts are range-checked,
// and oversized images are refused from their header with the file named.
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { checkReadableSplits, checkTrainingSplits, openDataset } from "../../src/data/datasets.js";
import { trainCommand } from "../../src/cli/train.js";
import { DEFAULT_MAX_PIXELS, UnreadableImageError, decodeImage, encodePng, writePng, type RgbImage } from "../../src/data/image.js";

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "ticketlab-hard-"));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

const solid = (w: number, h: number, v: number): RgbImage => ({ width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).fill(v) });

async function tree(name: string, files: string[]): Promise<string> {
  const root = path.join(tmp, name);
  for (const f of files) await writePng(path.join(root, f), solid(8, 8, f.includes("fake") ? 200 : 50));
  return root;
}

function labelsByPath(ds: { length(): number; label(i: number): 0 | 1; get(i: number): Promise<{ path?: string }> }) {
  return Promise.all(Array.from({ length: ds.length() }, async (_, i) => [(await ds.get(i)).path!, ds.label(i)] as const));
}

describe("symlinks", () => {
  it("a loop inside a class folder is followed once, warned about, and never labels fakes real", async () => {
    const root = await tree("loop", ["train/real/r1.png", "train/fake/fake1.png", "val/real/r2.png", "val/fake/fake2.png", "test/real/r3.png", "test/fake/fake3.png"]);
    await fs.symlink("..", path.join(root, "train/real/loop"));
    await fs.symlink("../../train", path.join(root, "train/fake/up"));
    await fs.symlink(".", path.join(root, "test/real/self"));
    const warnings: string[] = [];
    const ds = await openDataset(root, { size: 8, warn: (m) => warnings.push(m) });
    expect([ds.train.length(), ds.val.length(), ds.test.length()]).toEqual([2, 2, 2]);
    for (const [p, label] of await labelsByPath(ds.train)) expect(label, p).toBe(p.includes("fake") ? 1 : 0);
    expect(warnings.filter((w) => /symlink loop/.test(w)).length).toBe(3);
  });

  it("a class folder linked to the other class is read once", async () => {
    const root = await tree("dupclass", ["train/real/r1.png", "train/real/r2.png", "val/real/r.png", "val/fake/fake.png", "test/real/r.png", "test/fake/fake.png"]);
    await fs.symlink("real", path.join(root, "train/fake"));
    const warnings: string[] = [];
    const ds = await openDataset(root, { size: 8, warn: (m) => warnings.push(m) });
    expect(ds.train.length()).toBe(2);
    expect(warnings.some((w) => w.includes("train/fake"))).toBe(true);
    expect(() => checkTrainingSplits(ds)).toThrow(/only real images/);
  });
});

describe("split checks", () => {
  it("an empty validation folder is replaced by a held-out part of train, with a warning saying so", async () => {
    const files = Array.from({ length: 20 }, (_, i) => `train/${i % 2 ? "fake" : "real"}/x${i}.png`);
    const root = await tree("emptyval", [...files, "test/real/a.png", "test/fake/fake.png"]);
    await fs.mkdir(path.join(root, "val/real"), { recursive: true });
    const warnings: string[] = [];
    const ds = await openDataset(root, { size: 8, warn: (m) => warnings.push(m), holdoutFraction: 0.3 });
    expect(ds.val.length()).toBeGreaterThan(0);
    expect(warnings.join("\n")).toMatch(/the val folder holds no image; holding out \d+ of 20 training images instead/);
  });

  for (const [spec, re] of [
    ["synthetic:train=0", /training split has no images/],
    ["synthetic:train=1", /only real images \(1\)/],
    ["synthetic:val=0", /validation split has no images/],
    ["synthetic:test=0", /test split has no images/],
  ] as const) {
    it(`${spec} is a one-line error`, async () => {
      const ds = await openDataset(spec, { size: 16 });
      expect(() => checkTrainingSplits(ds)).toThrow(re);
    });
  }

  for (const spec of ["synthetic:train=1e12", "synthetic:train=-1", "synthetic:train=2.5", "synthetic:difficulty=2", "synthetic:seed=-3", "synthetic:train="]) {
    it(`${spec} is refused with the key and range named`, async () => {
      await expect(openDataset(spec, { size: 16 })).rejects.toThrow(/dataset spec 'synthetic:[^']*': (train|difficulty|seed)=\S* must be|bad value/);
    });
  }
});

describe("unreadable splits", () => {
  const sound = ["train/real/r1.png", "train/fake/fake1.png", "val/real/r2.png", "val/fake/fake2.png", "test/real/r3.png", "test/fake/fake3.png"];
  it("a class of a split with no readable image fails before training, naming the split, the class and the first file", async () => {
    const root = await tree("badfakes", sound);
    for (const f of ["train/fake/fake1.png", "train/fake/fake9.png"]) await fs.writeFile(path.join(root, f), "not an image");
    const ds = await openDataset(root, { size: 8, warn: () => {} });
    await expect(checkReadableSplits(ds)).rejects.toThrow(/none of the 2 fake images of the training split can be read \(first: .*train\/fake\/fake1\.png/);
    // One readable image per class is enough: the loader skips the others with a warning.
    await fs.writeFile(path.join(root, "train/fake/fake9.png"), await encodePng(solid(8, 8, 200)));
    await expect(checkReadableSplits(await openDataset(root, { size: 8, warn: () => {} }))).resolves.toBeUndefined();
    await fs.writeFile(path.join(root, "test/real/r3.png"), "");
    await expect(checkReadableSplits(await openDataset(root, { size: 8, warn: () => {} }))).rejects.toThrow(/1 real images of the test split/);
  });

  it("ticketlab train on such data exits with the one-line error and creates no run folder", async () => {
    const root = await tree("badtrain", sound);
    await fs.writeFile(path.join(root, "val/real/r2.png"), "junk");
    const out = path.join(tmp, "badtrain-run");
    await expect(trainCommand.run(["--data", root, "--size", "32", "--epochs", "1", "--out", out, "--no-tune"])).rejects.toThrow(
      /^--data .*badtrain: .*none of the 1 real images of the validation split can be read/,
    );
    await expect(fs.stat(out)).rejects.toThrow(/ENOENT/);
  });
});

describe("oversized images", () => {
  afterEach(() => {
    delete process.env.TICKETLAB_MAX_PIXELS;
  });
  it("documents a limit well above any face crop and below a decompression bomb", () => {
    expect(DEFAULT_MAX_PIXELS).toBeGreaterThanOrEqual(7680 * 4320);
    expect(DEFAULT_MAX_PIXELS).toBeLessThan(16000 * 16000);
  });
  it("an image above the limit is refused from its header, naming the file and its size", async () => {
    const file = path.join(tmp, "big.png");
    await fs.writeFile(file, await encodePng(solid(300, 200, 7)));
    process.env.TICKETLAB_MAX_PIXELS = "50000";
    const err = await decodeImage(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnreadableImageError);
    expect((err as Error).message).toBe(`cannot read image ${file}: image is 300x200 (0.1 Mpx), above the 0.1 Mpx limit (TICKETLAB_MAX_PIXELS)`);
    delete process.env.TICKETLAB_MAX_PIXELS;
    expect((await decodeImage(file)).width).toBe(300);
  });
});

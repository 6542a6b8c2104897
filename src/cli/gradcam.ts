// `ticketlab gradcam`: where a run's dense and pruned detectors look. Flags and checks here; the work
// is src/explain/run.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { closeDevice, initDevice, deviceName } from '../tensor/device.js';
import { parseFlags, type Command } from './args.js';
import { KERNEL_FLAG, KERNEL_FLAG_HELP, kernelFlag, num } from './flags.js';
import { CAM_METHODS, CAM_TARGETS, type CamMethod, type CamTarget } from '../explain/gradcam.js';
import { checkLevels, defaultLevels, explainRun, readRunInfo, summaryText } from '../explain/run.js';
import { TAP_LAYERS, type ModelName } from '../nn/models/index.js';
import { checkRunDir, lockRun, makeRunDir } from '../train/run.js';
import { GRADCAM_DIR } from '../io/run-paths.js';

const log = (m: string) => process.stderr.write(m + '\n');

const FLAGS = {
  run: { type: 'string' },
  levels: { type: 'string' },
  images: { type: 'string', default: 'synthetic' },
  n: { type: 'string', default: '16' },
  out: { type: 'string' },
  layer: { type: 'string' },
  target: { type: 'string', default: 'fake' },
  method: { type: 'string', default: 'gradcam' },
  batch: { type: 'string', default: '16' },
  quiet: { type: 'boolean', default: false },
  ...KERNEL_FLAG,
} as const;

/** `0,4,7` -> [0, 4, 7]; one-line errors naming the flag. */
export function parseLevelList(s: string): number[] {
  const parts = s.split(',').map((v) => v.trim());
  if (!parts.length || parts.some((v) => v === '')) throw new Error(`--levels '${s}' must be a comma-separated list of level numbers, e.g. 0,4,7`);
  return parts.map((v) => {
    const k = Number(v);
    if (!Number.isInteger(k) || k < 0) throw new Error(`--levels '${s}': '${v}' is not a level number (0, 1, 2, ...)`);
    return k;
  });
}

export const gradcamCommand: Command = {
  name: 'gradcam',
  summary: "Grad-CAM of a run's levels: overlays, a level-by-level grid, attention-change numbers",
  help: `ticketlab gradcam --run DIR [--levels 0,4,7] [--images synthetic|DIR] [--n 16] [--out DIR]
                  [--layer NAME] [--target fake|real] [--method gradcam|gradcam++] [--batch N] [--quiet]

Shows where a run's detectors look, dense (level 0) and pruned (level k), on the same faces. For each
level it loads level_<k>/final.safetensors into the run's model (config.json gives model, input size and
data) with the level's mask.safetensors attached (when it has one), runs Grad-CAM in eval mode on n
images and writes into --out:
  input/NN_<label>.png        the faces at the model's input size
  level_<k>/NN_<label>.png    JET overlays at 50% opacity (pytorch-grad-cam's show_cam_on_image)
  grid.png                    one picture: columns = input, then each level; rows = real faces, then fakes
  summary.csv                 per level: level, sparsity, n, then mean and sample std of
                                frobenius   ||L_ref - L_level||_F of the normalised maps at input size
                                            (the study's measure; L_ref = the first level, normally 0)
                                pearson     correlation of the two maps (pearson_n = images where defined)
                                confidence_change  sigmoid(score) on image * own map minus on image
                                mask_ratio  synthetic fakes only: map mass per pixel inside the blend
                                            mask (> 0.5) over outside (> 1 = looks at the swapped face)
                              and accuracy (on these images, logit > 0 = fake)
  per_image.csv               the same per level and image, with the logit and the image's source
  gradcam.html                the grid, the table and every overlay, labelled

Maps: weights = spatial mean of d(score)/dA over the tapped block's output A, map = ReLU(sum_k w_k A_k),
min-max normalised per image ((x - min) / (max - min + 1e-7)), bilinearly resized to the input size.
Grad-CAM++ weights by sum_ij alpha_ij ReLU(g_ij), alpha = g^2 / (2 g^2 + sum_ab A_ab g^3), with the logit
as the score (the paper's exp(score) only rescales each map, which the normalisation removes).

Flags:
  --run DIR          run folder made by 'ticketlab train' or 'ticketlab imp' (required)
  --levels LIST      levels to compare, e.g. 0,4,7 (default: 0 and the finished levels nearest 60% and
                     80% sparsity, as in the study's figure); a level the run lacks is an error
  --images SRC       synthetic: the run's own synthetic test split (the generator the run trained on,
                     with each fake's blend mask); or a folder: a dataset root ticketlab reads (its test
                     split), or any folder of .jpg/.png images, labelled by a real/ or fake/ folder on
                     their path (default synthetic)
  --n N              images, half real and half fake, the first ones in index / path order (default 16)
  --out DIR          output folder (default <run>/gradcam)
  --layer NAME       tapped block output (default the model's last block):
                       meso4, mesoinception4  block1 .. block4 (default block4)
                       cnn5                   block1 .. block5 (default block5)
                       resnet18               layer1 .. layer4 (default layer4)
                     Maps are as coarse as the block: Meso-4's block4 is 2x2 at 64 px (3x3 at 72,
                     8x8 at 256); an earlier block gives finer but noisier maps
  --target T         fake (score = +logit, default) or real (score = -logit)
  --method M         gradcam (default) or gradcam++
  --batch N          images per forward/backward pass (default 16)
  --quiet            no progress lines
${KERNEL_FLAG_HELP}`,
  async run(args) {
    const { values } = parseFlags(args, FLAGS, 'gradcam');
    const kernels = kernelFlag(values);
    if (!values.run) throw new Error("gradcam: --run DIR is required; see 'ticketlab gradcam --help'");
    const run = values.run;
    if (!fs.existsSync(run) || !fs.statSync(run).isDirectory()) throw new Error(`--run ${run}: no such folder`);
    const info = readRunInfo(run);
    const levels = values.levels !== undefined ? parseLevelList(values.levels) : defaultLevels(run);
    checkLevels(run, levels);
    const target = values.target as CamTarget;
    if (!CAM_TARGETS.includes(target)) throw new Error(`--target '${values.target}' is not one of ${CAM_TARGETS.join(', ')}`);
    const method = values.method as CamMethod;
    if (!CAM_METHODS.includes(method)) throw new Error(`--method '${values.method}' is not one of ${CAM_METHODS.join(', ')}`);
    const taps = TAP_LAYERS[info.model as ModelName];
    if (values.layer !== undefined && !taps.includes(values.layer)) {
      throw new Error(`--layer '${values.layer}' is not a layer of ${info.model} (one of ${taps.join(', ')})`);
    }
    const n = num(values, 'n', { int: true, min: 1, max: 10000 });
    const batch = num(values, 'batch', { int: true, min: 1 });
    const images = values.images;
    if (images !== 'synthetic' && !fs.existsSync(images)) throw new Error(`--images ${images}: no such folder (or pass 'synthetic')`);
    const out = values.out ?? path.join(run, GRADCAM_DIR);
    checkRunDir(out);
    const dev = await initDevice();
    makeRunDir(out);
    // One writer per output folder, as for run folders.
    lockRun(out, 'ticketlab gradcam');
    if (!values.quiet) log(`device: ${deviceName(dev.info)}`);
    try {
      const r = await explainRun({ run, levels, images, n, out, layer: values.layer, target, method, batch, kernels, log: values.quiet ? undefined : log });
      process.stdout.write(`${summaryText(r)}\nresults in ${out}/ (${r.files.html}, ${r.files.grid}, ${r.files.summary})\n`);
      return 0;
    } finally {
      closeDevice();
    }
  },
};

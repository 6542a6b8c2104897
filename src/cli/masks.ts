// `ticketlab masks`: mask anatomy of a run (host only). The numbers are src/prune/anatomy.ts, the
// files and tables src/report/mask-report.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseFlags, type Command } from './args.js';
import { parseLevelList } from './gradcam.js';
import { formatMaskAnatomy, writeMaskAnatomy } from '../report/mask-report.js';

export const MASKS_HELP = `ticketlab masks RUN [--levels 1,3,5] [--compare RUN2|LEVEL_DIR|MASK_FILE] [--out DIR] [--quiet]

Mask anatomy, at the granularity of a convolution. A weight [out, in, kh, kw] (linear: [out, in]) is
seen as an out x in grid of kernel slices. For each mask and layer:
  dead filters     output filters with no kept weight (their output is the bias alone)
  dead inputs      input channels no filter reads any more (linear layers: inputs no unit reads,
                   counted apart from channels)
  filter density   histogram of the kept fraction of each filter, a text chart under its bin edges
                   (dead = nothing kept, then (0, 10%], ..., (90, 100%])
  taps kept        for each of the kh x kw kernel positions, the % of slices that keep it
  compaction       weights a structured compaction removes by dropping the dead filters and channels
                   (rows and columns of the grid), per layer and in total, and as a share of the
                   pruned weights: the part of the sparsity a dense kernel can use without sparse math
Overlap of two masks: the Jaccard index |A and B| / |A or B| of the kept weights, per layer and over
all layers, next to the Jaccard index nested masks of these sizes have ("if nested": kept(smaller) /
kept(larger); consecutive IMP levels must reach it, "of nested" 100%) and what two independent random
masks of the same densities give ("chance"). Every fraction prints as a percentage. Pairs:
each shown level with the next one, IMP level k with oneshot_<scope>/level_k and
controls/random_prune/level_k when the run has them, and every shown level with --compare.

RUN is a run folder (level_<k>/mask.safetensors), a folder of .safetensors files from PyTorch's
torch.nn.utils.prune (<layer>.weight_mask), or a single mask file. A mask entry that is not exactly 0
or 1 (a soft mask, 0.5) is refused, naming the file and tensor ('ticketlab check' lists them all).

Writes into --out (default RUN/masks):
  anatomy.csv          source, layer, shape, total, kept, density, kind (conv/linear), filters,
                       dead_filters, channels, dead_channels (conv), inputs, dead_inputs (linear),
                       compactable
  compaction.csv       per mask: prunable, pruned, sparsity, dead filters and channels, compactable,
                       compactable_of_pruned
  filter_density.csv   source, layer, bin, low, high (the bin's edges), filters
  taps.csv             source, layer, row, col, kept_fraction
  overlap.csv          a, b, kind, layer, kept_a, kept_b, both, either, jaccard, nested, chance
  grid-<mask>-<layer>.svg|png    the filter-by-channel grid as a titled figure (rows = filters or
                                 output units, columns = input channels or inputs, each axis named
                                 with its size; legend: white = slice fully pruned, dark blue = kept)
  filter_density-<mask>.svg      the filter-density histogram, one bar series per layer
  taps-<mask>-<layer>.svg        the kh x kw kernel positions, % of slices keeping each
'ticketlab report' includes the same tables and pictures in report.html.

Flags:
  --levels LIST   IMP levels to show, e.g. 1,3,5 (default: every pruned level with a mask)
  --compare X     another run (two seeds, another dataset's ticket; matched level by level), a level
                  folder (e.g. a transfer's imp-global_level_3/) or a mask file
  --out DIR       where to write (default RUN/masks, or masks/ beside a mask file)
  --quiet         print only where the files are, not the tables
`;

export const masksCommand: Command = {
  name: 'masks',
  summary: 'mask anatomy: dead filters/channels, filter density, surviving kernel taps, Jaccard overlap, compaction',
  help: MASKS_HELP,
  async run(args) {
    const { values, positionals } = parseFlags(
      args,
      { levels: { type: 'string' }, compare: { type: 'string' }, out: { type: 'string' }, quiet: { type: 'boolean', default: false } },
      'masks',
    );
    if (positionals.length !== 1) throw new Error("masks: give exactly one run folder or mask file; see 'ticketlab masks --help'");
    const run = positionals[0];
    const levels = values.levels === undefined ? undefined : parseLevelList(values.levels);
    const isFile = fs.existsSync(run) && fs.statSync(run).isFile();
    const outDir = values.out ?? path.join(isFile ? path.dirname(run) : run, 'masks');
    const r = await writeMaskAnatomy({ run, levels, compare: values.compare, outDir });
    if (!values.quiet) process.stdout.write(formatMaskAnatomy(r) + '\n\n');
    process.stdout.write(`wrote ${r.files.length} files to ${r.outDir}/\n`);
    return 0;
  },
};

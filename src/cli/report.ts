// `ticketlab report`: summary.csv, plots and report.html over one or more run folders. Host only: it
// reads the JSON the runs wrote and never opens the GPU, so it works while runs are still going.
import * as path from 'node:path';
import { parseFlags, type Command } from './args.js';
import { writeRunReport, type RunReport } from '../report/run-report.js';
import { RUN_FILES } from '../io/run-paths.js';

export const REPORT_HELP = `ticketlab report <run> [<run> ...] [--out DIR] [--quiet]

Reads run folders made by 'ticketlab imp' (or 'train', 'sweep') and writes, into --out (default: the
first run folder):
  summary.csv                 one row per level folder: model, data, method, level, sparsity,
                              parameters_left, best_val_accuracy, test_accuracy, test_auc,
                              test_balanced_accuracy, epochs_to_best, epochs, then images_per_second,
                              winning_ticket (yes/no/dense), status (finished/unfinished), run.
                              Accuracies and sparsity are fractions (0.912, not 91.2).
  accuracy_vs_sparsity.svg    test accuracy (%) against sparsity (%), one line per method, each
  auc_vs_sparsity.svg         starting at the run's dense point. Over several models or datasets these
                              show the IMP lines of each (dashed = per-layer scope), and
                              accuracy_vs_sparsity-<model>-<data>.svg / auc_... show every method of one.
  layer_sparsity.csv          per run, level and prunable layer: total, kept, sparsity
  layer_density-<run>.svg     weights left per layer at up to four IMP levels
  report.html                 everything above, the winning-ticket verdicts, each run's settings,
                              per-level validation curves and the run's gradcam/ outputs when present

Methods: imp-global / imp-layer (level_<k>/, by the run's --scope; level 0 is the dense model),
oneshot-global / oneshot-layer (oneshot_<scope>/level_<k>/), reinit and random_prune
(controls/<kind>/level_<k>/), dense (a 'train' run).

Winning ticket: a pruned level whose test accuracy is at most 1 point below the dense model's and,
where controls were trained at that level, above every one of them.

Levels still training (no result.json) are listed as unfinished and left out of the plots. A file
that is present but not readable as what the run writes is an error naming its folder.

Flags:
  --out DIR     where to write (default: the first run folder)
  --quiet       print only where the files are, not the tables
`;

export function printReport(r: RunReport, write: (s: string) => void, quiet = false): void {
  if (!quiet) {
    write(r.summaryText + '\n\n');
    write(r.verdictText + '\n\n');
    if (r.layerText) write(r.layerText + '\n\n');
  }
  if (r.unfinished.length) write(`unfinished (no result.json yet): ${r.unfinished.join(', ')}\n`);
  const html = r.files.find((f) => path.basename(f) === RUN_FILES.report);
  write(`wrote ${r.files.length} files to ${r.outDir}/: ${r.files.map((f) => path.relative(r.outDir, f)).join(', ')}\n`);
  if (html) write(`open ${html}\n`);
}

export const reportCommand: Command = {
  name: 'report',
  summary: 'summary.csv, accuracy/AUC-vs-sparsity plots, per-layer sparsity and report.html for run folders',
  help: REPORT_HELP,
  async run(args) {
    const { values, positionals } = parseFlags(args, { out: { type: 'string' }, quiet: { type: 'boolean', default: false } }, 'report');
    if (!positionals.length) throw new Error("report: give at least one run folder; see 'ticketlab report --help'");
    const out = values.out ?? positionals[0];
    const r = await writeRunReport(positionals, out);
    printReport(r, (s) => process.stdout.write(s), values.quiet);
    return 0;
  },
};

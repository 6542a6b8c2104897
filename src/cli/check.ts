// `ticketlab check`: mask invariants of run folders (ours or PyTorch's), host only. The checks are
// src/prune/check.ts; this module parses flags and prints.
import { parseFlags, type Command } from './args.js';
import { num } from './flags.js';
import { checkRun, formatRunCheck } from '../prune/check.js';

export const CHECK_HELP = `ticketlab check RUN [RUN ...] [--rate X --scope global|layer] [--masks FILE] [--json]

Verifies the mask invariants of each run folder from its files alone (no GPU, no model) and prints one
line per invariant: PASS, FAIL with the first offending file, tensor and flat element index, or skip
with the reason. Exit status 1 when any invariant fails in any run, or when nothing in a folder could
be checked; 0 otherwise.

Invariants (a ticketlab run folder: level_<k>/, oneshot_<scope>/level_<k>/, controls/<kind>/level_<k>/,
transfer-<data>/):
  binary          every <layer>.weight_mask entry of every mask.safetensors is exactly 0 or 1; a level
                  folder with saved weights but no mask.safetensors fails
  monotone        IMP level k's mask keeps nothing level k-1 pruned
  sparsity-json   per-layer total/kept/pruned and the totals in sparsity.json equal the mask's counts
  target          level 0 keeps everything; IMP level k keeps what pruning the run's rate of level k-1's
                  remaining weights (globally, or per layer for --scope layer) leaves: round-half-up,
                  as ticketlab prunes; with explicit sparsities, and for one-shot levels, keeps
                  total - round(total * s) overall (global) or per layer. Rate, sparsities and scope
                  come from the run's config.json
  zeros           final.safetensors, best.safetensors and checkpoint.safetensors (weights and the
                  optimizer state optimizer.<key>.exp_avg / exp_avg_sq / momentum_buffer) hold
                  exactly +0 (not -0) wherever the level's mask is 0. start.safetensors is the
                  unmasked rewind point by design and is checked by 'rewind' instead
  rewind          start.safetensors equals the rewind point bit for bit at every kept entry and in
                  every non-pruned tensor: level_0/init.safetensors for level 0, init or
                  rewind.safetensors (or the previous level's final weights for --rewind none) for
                  IMP and one-shot levels, the control's own reinit.safetensors for reinit controls
  random-prune    controls/random_prune/level_k keeps exactly IMP level k's per-layer counts
  reinit          controls/reinit/level_k has exactly IMP level k's mask
  transfer        a ticket retrained on another dataset (transfer-<data>/<imp|oneshot>-<scope>_level_k/,
                  'ticketlab transfer') has exactly its source level's mask; its dense/ keeps
                  everything; both also get binary, sparsity-json, zeros and rewind

PyTorch folders: a folder (no config.json, no level_<k>/) of state dicts saved as .safetensors, one
per pruning level, in natural order of their names (level_2 before level_10). Every entry is either
checked or listed as ignored with the reason (.pt/.pth pickles are named, with the one line of Python
that converts them). Files of torch.nn.utils.prune hold <layer>.weight_orig and <layer>.weight_mask:
checked are binary, monotone, zeros (torch's weight is weight_orig * weight_mask; a plain
<layer>.weight beside the mask is checked instead; either sign of zero is accepted, as weight_orig * 0
is -0 for a negative weight_orig) and target when --rate is given: each file prunes
round(remaining * rate) of the previous file's remaining weights, rounded as PyTorch does (Python's
round: halves to even), the first file from the dense model unless it keeps everything. A file
without masks (saved after prune.remove) gets zeros against --masks FILE, else against the masks of
the file before it. To save such a folder without the safetensors package, use the bridge shipped in
python/ (docs/check.md):

  import ticketlab_torch as tt
  for level in range(3):
      prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)
      # ... rewind and retrain ...
      tt.save_pruned(model, f"out/level_{level + 1}.safetensors")

Flags:
  --rate X        PyTorch folders: the fraction of the previous file's remaining weights each file pruned
                  (the first file: of the dense model's)
  --scope S       with --rate: global (one count over all layers, default) or layer (each layer's own)
  --masks FILE    PyTorch folders: the masks (<layer>.weight_mask) that files without masks, saved after
                  prune.remove, are checked against (default: those of the file before them)
  --json          print the results as JSON (one object per run) instead of the table
`;

export const checkCommand: Command = {
  name: 'check',
  summary: 'verify mask invariants of run folders (ours or torch.nn.utils.prune files); exit 1 on a violation',
  help: CHECK_HELP,
  async run(args) {
    const { values, positionals } = parseFlags(args, { rate: { type: 'string' }, scope: { type: 'string' }, masks: { type: 'string' }, json: { type: 'boolean', default: false } }, 'check');
    if (!positionals.length) throw new Error("check: give at least one run folder; see 'ticketlab check --help'");
    const rate = values.rate === undefined ? undefined : num(values, 'rate', { min: 0, max: 1 });
    if (values.scope !== undefined && values.scope !== 'global' && values.scope !== 'layer') throw new Error(`--scope '${values.scope}' is not global or layer`);
    const scope = values.scope as 'global' | 'layer' | undefined;
    let ok = true;
    const all = [];
    for (const run of positionals) {
      const r = await checkRun(run, { rate, scope, masks: values.masks });
      ok &&= r.ok;
      if (values.json) all.push(r);
      else process.stdout.write(formatRunCheck(r) + '\n');
    }
    if (values.json) process.stdout.write(JSON.stringify(all, null, 2) + '\n');
    return ok ? 0 : 1;
  },
};

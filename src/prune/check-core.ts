// The vocabulary of `ticketlab check` shared by its two folder kinds (check.ts: ticketlab runs,
// check-torch.ts: PyTorch files): the invariants, results, a per-check file cache and the verdict
// accumulator. Public names are re-exported by check.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readF32Tensors } from '../nn/checkpoint.js';
import type { Scope } from './magnitude.js';
import type { Offence } from './invariants.js';

export type InvariantId = 'binary' | 'structure' | 'monotone' | 'sparsity-json' | 'target' | 'zeros' | 'rewind' | 'random-prune' | 'reinit' | 'transfer';

export const INVARIANTS: readonly { id: InvariantId; title: string }[] = [
  { id: 'binary', title: 'masks are 0/1' },
  { id: 'structure', title: "masks have the run's granularity (whole blocks, filters, channels)" },
  { id: 'monotone', title: "each level's mask within the previous one (pruned stays pruned)" },
  { id: 'sparsity-json', title: 'kept counts equal sparsity.json' },
  { id: 'target', title: "kept counts equal the level's target" },
  { id: 'zeros', title: 'pruned weights and optimizer state exactly +0 in saved files' },
  { id: 'rewind', title: 'start weights equal the rewind point under the mask' },
  { id: 'random-prune', title: "random-prune controls keep the ticket's per-layer counts" },
  { id: 'reinit', title: "reinit controls share the ticket's mask" },
  { id: 'transfer', title: "tickets retrained on another dataset keep their source mask" },
];

/** The first offence of an invariant, located: a file (relative to the run folder) and an element. */
export interface Violation extends Offence {
  file: string;
}

export interface InvariantResult {
  id: InvariantId;
  title: string;
  status: 'pass' | 'fail' | 'skip';
  /** How many files (or file pairs) were checked. */
  checked: number;
  violation: Violation | null;
  /** Why an invariant was skipped, or what it was checked on. */
  note: string;
}

/** A file of a PyTorch folder that was not checked, and why. */
export interface IgnoredFile {
  file: string;
  reason: string;
}

export interface RunCheck {
  run: string;
  kind: 'ticketlab' | 'pytorch';
  /** Level folders (ticketlab) or files (PyTorch) checked, relative to the run folder. */
  levels: string[];
  /** PyTorch folders: every other entry of the folder, with the reason (always empty for ticketlab runs). */
  ignored: IgnoredFile[];
  results: InvariantResult[];
  /** No invariant failed and something was checked. */
  ok: boolean;
}

export interface CheckOptions {
  /** For a PyTorch folder: the rate each file pruned of the previous file's remaining weights. */
  rate?: number;
  /** For a PyTorch folder with `rate`: global or per-layer counts (default global). */
  scope?: Scope;
  /**
   * For a PyTorch folder: a .safetensors file whose `<layer>.weight_mask` tensors the files without
   * masks (saved after `prune.remove`) are checked against. Without it, such a file is checked against
   * the masks of the file before it.
   */
  masks?: string;
}

export type Tensors = Map<string, Float32Array>;

/** Reads each file once per check; missing files are null. */
export class FileCache {
  private files = new Map<string, Promise<Tensors | null>>();
  constructor(readonly run: string) {}
  tensors(file: string): Promise<Tensors | null> {
    let p = this.files.get(file);
    if (!p) {
      p = fs.existsSync(file)
        ? readF32Tensors(file).then(({ tensors }) => new Map([...tensors].map(([k, t]) => [k, t.data])))
        : Promise.resolve(null);
      this.files.set(file, p);
    }
    return p;
  }
  rel(file: string): string {
    return path.relative(this.run, file) || path.basename(file);
  }
}

/** Accumulates one invariant's verdict: the first violation wins, every check counts. */
export class Verdict {
  checked = 0;
  violation: Violation | null = null;
  notes: string[] = [];
  constructor(readonly id: InvariantId) {}
  record(file: string, o: Offence | null): void {
    this.checked++;
    if (o && !this.violation) this.violation = { file, ...o };
  }
  result(skipNote: string): InvariantResult {
    const title = INVARIANTS.find((i) => i.id === this.id)!.title;
    const status = this.violation ? 'fail' : this.checked ? 'pass' : 'skip';
    return { id: this.id, title, status, checked: this.checked, violation: this.violation, note: this.checked ? this.notes.join('; ') : skipNote };
  }
}

/** A mask offence names the file's tensor (`conv1.weight_mask`), not the weight. */
export const asMask = (o: Offence | null): Offence | null => (o && o.index >= 0 && !o.tensor.endsWith('_mask') ? { ...o, tensor: `${o.tensor}_mask` } : o);

/** A fresh verdict per invariant. */
export function verdicts(): Record<InvariantId, Verdict> {
  return Object.fromEntries(INVARIANTS.map((i) => [i.id, new Verdict(i.id)])) as Record<InvariantId, Verdict>;
}

// Binary-detector metrics from logits (positive = fake), computed on the host in float64.

export interface BinaryMetrics {
  n: number;
  /** Mean BCE-with-logits. */
  loss: number;
  accuracy: number;
  /** Mean of the true-positive and true-negative rates: fair when classes are unbalanced. */
  balancedAccuracy: number;
  /** Area under the ROC curve (rank statistic; ties count one half). NaN with one class only. */
  auc: number;
  tp: number;
  tn: number;
  fp: number;
  fn: number;
}

export function bceWithLogitsHost(logit: number, y: number): number {
  return Math.max(logit, 0) - logit * y + Math.log1p(Math.exp(-Math.abs(logit)));
}

/** ROC AUC by the Mann-Whitney U statistic with average ranks for ties. */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const n = scores.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let pos = 0;
  let rankSumPos = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[idx[j + 1]] === scores[idx[i]]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (labels[idx[k]] > 0.5) {
        pos++;
        rankSumPos += avgRank;
      }
    }
    i = j + 1;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return NaN;
  return (rankSumPos - (pos * (pos + 1)) / 2) / (pos * neg);
}

export function binaryMetrics(logits: ArrayLike<number>, labels: ArrayLike<number>): BinaryMetrics {
  const n = logits.length;
  if (labels.length !== n) throw new Error(`metrics: ${n} logits for ${labels.length} labels`);
  let tp = 0,
    tn = 0,
    fp = 0,
    fn = 0,
    loss = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i] > 0.5 ? 1 : 0;
    const p = logits[i] > 0 ? 1 : 0;
    loss += bceWithLogitsHost(logits[i], y);
    if (p === 1 && y === 1) tp++;
    else if (p === 0 && y === 0) tn++;
    else if (p === 1) fp++;
    else fn++;
  }
  const tpr = tp + fn ? tp / (tp + fn) : NaN;
  const tnr = tn + fp ? tn / (tn + fp) : NaN;
  const bal = Number.isNaN(tpr) ? tnr : Number.isNaN(tnr) ? tpr : (tpr + tnr) / 2;
  return {
    n,
    loss: n ? loss / n : NaN,
    accuracy: n ? (tp + tn) / n : NaN,
    balancedAccuracy: bal,
    auc: rocAuc(logits, labels),
    tp,
    tn,
    fp,
    fn,
  };
}

/** Metrics rounded for logs: keeps files readable without losing what matters. */
export function roundMetrics(m: BinaryMetrics): BinaryMetrics {
  const r = (v: number) => (Number.isFinite(v) ? Math.round(v * 1e6) / 1e6 : v);
  return { ...m, loss: r(m.loss), accuracy: r(m.accuracy), balancedAccuracy: r(m.balancedAccuracy), auc: r(m.auc) };
}

const METRIC_FIELDS = ['n', 'loss', 'accuracy', 'balancedAccuracy', 'auc', 'tp', 'tn', 'fp', 'fn'] as const;

/**
 * Metrics read back from a file, checked: every field a number (null, which JSON writes for NaN, reads
 * as NaN). A damaged record is an error naming `where` (file and field), not a "cannot read properties
 * of undefined" later when it is printed.
 */
export function metricsFrom(v: unknown, where: string): BinaryMetrics {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${where}: expected metrics, found ${JSON.stringify(v) ?? 'nothing'}`);
  const o = v as Record<string, unknown>;
  const out: Record<string, number> = {};
  for (const k of METRIC_FIELDS) {
    const x = o[k];
    if (x === null && k !== 'n') out[k] = NaN;
    else if (typeof x === 'number') out[k] = x;
    else throw new Error(`${where}: metric '${k}' is ${JSON.stringify(x) ?? 'missing'}, not a number`);
  }
  return out as unknown as BinaryMetrics;
}

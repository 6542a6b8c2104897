import type { BinaryMetrics } from '../train/metrics.js';

export function pct(v: number): string {
  return Number.isFinite(v) ? `${(v * 100).toFixed(2)}%` : 'n/a';
}

function fixed(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : 'n/a';
}

export function formatMetrics(m: BinaryMetrics): string {
  return `loss ${fixed(m.loss, 4)}, accuracy ${pct(m.accuracy)}, balanced ${pct(m.balancedAccuracy)}, AUC ${fixed(m.auc, 4)} (n=${m.n})`;
}

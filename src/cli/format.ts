import type { BinaryMetrics } from '../train/metrics.js';

export function pct(v: number): string {
  return Number.isFinite(v) ? `${(v * 100).toFixed(2)}%` : 'n/a';
}

export function formatMetrics(m: BinaryMetrics): string {
  return `loss ${m.loss.toFixed(4)}, accuracy ${pct(m.accuracy)}, balanced ${pct(m.balancedAccuracy)}, AUC ${Number.isFinite(m.auc) ? m.auc.toFixed(4) : 'n/a'} (n=${m.n})`;
}

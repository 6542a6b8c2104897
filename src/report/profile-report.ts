// The report's kernel-profile section: GPU time per layer across the levels of a pruning run, from the
// level_<k>/profile.json files that `ticketlab profile --run` writes. With dense kernels the time stays
// flat as weights are pruned; sparse kernels (issue 10) should make it fall with density.
import { readLevelJson } from './level-json.js';
import type { LevelProfileFile } from '../train/profile.js';
import { htmlTable, type TableRow } from '../util/table.js';
import { escapeHtml } from '../util/escape.js';
import { figure, scrollable, type ReportSection } from './html.js';
import { linePlot, type LineSeries } from './svg-plot.js';

/** Layers drawn as lines (the most expensive ones); the table has every layer. */
const PLOTTED_LAYERS = 8;

/** The IMP levels of a run that have a profile.json, in level order. */
export function readLevelProfiles(run: string): LevelProfileFile[] {
  return readLevelJson(run, 'profile', `re-run 'ticketlab profile --run ${run}'`, (v) => v as LevelProfileFile);
}

/** ms per step of each layer (all phases) at each level: layer -> level -> ms. */
function layerTimes(profiles: readonly LevelProfileFile[]): Map<string, Map<number, { ms: number; density: number | null }>> {
  const out = new Map<string, Map<number, { ms: number; density: number | null }>>();
  for (const p of profiles) {
    for (const r of p.rows) {
      let byLevel = out.get(r.layer);
      if (!byLevel) out.set(r.layer, (byLevel = new Map()));
      const cell = byLevel.get(p.level) ?? { ms: 0, density: r.density };
      cell.ms += r.ms;
      byLevel.set(p.level, cell);
    }
  }
  return out;
}

/** The section for one run, or null when none of its levels was profiled. */
export function profileSection(run: { dir: string; name: string }): ReportSection | null {
  const profiles = readLevelProfiles(run.dir);
  if (!profiles.length) return null;
  const times = layerTimes(profiles);
  const levels = profiles.map((p) => p.level);
  const peak = (m: Map<number, { ms: number }>) => Math.max(...[...m.values()].map((c) => c.ms));
  const ranked = [...times].sort((a, b) => peak(b[1]) - peak(a[1]));
  const series: LineSeries[] = [
    { name: 'whole step', points: profiles.map((p) => [p.level, p.gpuMs] as const), dashed: true },
    ...ranked.slice(0, PLOTTED_LAYERS).map(([layer, m]) => ({ name: layer, points: levels.filter((k) => m.has(k)).map((k) => [k, m.get(k)!.ms] as const) })),
  ];
  const svg = linePlot({
    title: `GPU time per training step vs IMP level (${profiles[0].model}, ${profiles[0].size} px, batch ${profiles[0].batch})`,
    xLabel: 'IMP level',
    yLabel: 'ms per step',
    series,
    xTicks: levels,
  });
  const rows: TableRow[] = [...times].map(([layer, m]) => ({
    layer,
    ...Object.fromEntries(
      levels.map((k) => {
        const c = m.get(k);
        return [`level ${k}`, c ? `${c.ms.toFixed(2)}${c.density !== null ? ` (${(c.density * 100).toFixed(0)}%)` : ''}` : ''];
      }),
    ),
  }));
  rows.push({ layer: 'whole step (GPU)', ...Object.fromEntries(profiles.map((p) => [`level ${p.level}`, p.gpuMs.toFixed(2)])) });
  rows.push({ layer: 'wall clock, unprofiled', ...Object.fromEntries(profiles.map((p) => [`level ${p.level}`, p.wallMs.toFixed(2)])) });
  return {
    heading: `Kernel time per layer: ${run.name}`,
    id: `kernel-profile-${run.name}`,
    html:
      `<p>GPU ms per training step of each layer (forward, input and weight gradients, optimizer), by level, with the layer's weight density in brackets; ` +
      `from level_&lt;k&gt;/profile.json (<code>ticketlab profile --run</code>, ${escapeHtml(profiles[0].adapter)}).</p>\n` +
      figure(svg) +
      '\n' +
      scrollable(htmlTable(rows, ['layer', ...levels.map((k) => `level ${k}`)])),
  };
}

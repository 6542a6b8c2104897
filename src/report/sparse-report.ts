// The report's sparse-kernel section: per pruned layer, the time of each kernel candidate (dense on
// weight * mask, compressed rows, blocked) against the layer's weight density across the levels of a
// run, and the kernel chosen per phase. Read from level_<k>/sparse-kernels.json, which a level trained
// with `--kernels auto` writes (and `ticketlab profile --run DIR --kernels auto` fills in): auto times
// the three candidates on the layer's shapes under its mask, so every level adds one density point.
// The chosen kernels come from the level's planner record (kernels.json) unless the file holds them
// (nn/sparse.ts planWithKernels).
import { planWithKernels, type KernelPlan, type KernelPlanFile } from '../nn/sparse.js';
import { readLevelJson } from './level-json.js';
import { KERNEL_VARIANTS, PHASES, type KernelVariant } from '../tensor/sparse-plan.js';
import { htmlTable, type TableRow } from '../util/table.js';
import { figure, figureRow, scrollable, type ReportSection } from './html.js';
import { linePlot, type LineSeries } from './svg-plot.js';

/** Layers plotted (the most expensive under dense kernels); the table has every layer. */
const PLOTTED_LAYERS = 8;

const LABEL: Readonly<Record<KernelVariant, string>> = { dense: 'dense', csr: 'sparse: compressed rows', blocked: 'sparse: blocked' };

export interface LevelSparsePlan extends KernelPlan {
  level: number;
}

/** The levels of a run with a sparse-kernels.json, in level order. Errors name the file. */
export function readSparsePlans(run: string): LevelSparsePlan[] {
  return readLevelJson(run, 'sparseKernels', `delete it and re-run the level or 'ticketlab profile --run ${run} --kernels auto'`, (v, dir) =>
    planWithKernels(v as KernelPlanFile, dir),
  );
}

/** ms of forward + both gradients of one candidate, or null when it was not timed. */
function stepMs(ms: KernelPlan['layers'][number]['ms'], v: KernelVariant): number | null {
  if (!ms) return null;
  let s = 0;
  for (const ph of PHASES) {
    const t = ms[ph][v];
    if (t === undefined) return null;
    s += t;
  }
  return s;
}

/** The section for one run, or null when no level recorded sparse kernels. */
export function sparseKernelSection(run: { dir: string; name: string }): ReportSection | null {
  const plans = readSparsePlans(run.dir);
  if (!plans.length) return null;
  const layers = [...new Set(plans.flatMap((p) => p.layers.map((l) => l.layer)))];
  const densest = (layer: string) => Math.max(0, ...plans.flatMap((p) => p.layers.filter((l) => l.layer === layer).map((l) => stepMs(l.ms, 'dense') ?? 0)));
  const plotted = [...layers].sort((a, b) => densest(b) - densest(a)).slice(0, PLOTTED_LAYERS);
  const figs: string[] = [];
  for (const layer of plotted) {
    const series: LineSeries[] = KERNEL_VARIANTS.map((v) => ({
      name: LABEL[v],
      points: plans
        .flatMap((p) => p.layers.filter((l) => l.layer === layer).map((l) => [l.density * 100, stepMs(l.ms, v)] as const))
        .filter((pt): pt is readonly [number, number] => pt[1] !== null)
        .sort((a, b) => a[0] - b[0]),
      dashed: v === 'dense',
    })).filter((s) => s.points.length);
    if (!series.length) continue;
    figs.push(figure(linePlot({ title: layer, xLabel: 'weight density (%)', yLabel: 'ms, forward + both gradients', series, width: 520, height: 300 })));
  }
  const rows: TableRow[] = [];
  for (const p of plans) {
    for (const l of p.layers) {
      const t = (v: KernelVariant) => {
        const ms = stepMs(l.ms, v);
        return ms === null ? '' : ms.toFixed(2);
      };
      rows.push({
        level: p.level,
        layer: l.layer,
        density: `${(l.density * 100).toFixed(1)}%`,
        mode: p.mode,
        dense: t('dense'),
        'compressed rows': t('csr'),
        blocked: t('blocked'),
        'chosen (fwd / in / wt)': PHASES.map((ph) => l.kernels[ph]).join(' / '),
        'speed-up of chosen': (() => {
          const d = stepMs(l.ms, 'dense');
          if (!l.ms || d === null) return '';
          const c = PHASES.reduce((s, ph) => s + (l.ms![ph][l.kernels[ph]] ?? NaN), 0);
          return `${(d / c).toFixed(2)}x`;
        })(),
      });
    }
  }
  const timed = plans.some((p) => p.layers.some((l) => l.ms));
  return {
    heading: `Dense vs sparse kernels per layer: ${run.name}`,
    id: `sparse-kernels-${run.name}`,
    html:
      `<p>Per pruned layer and level: ms of forward + input gradient + weight gradient with each kernel (dense on weight * mask, ` +
      `sparse with compressed rows, sparse blocked), timed on the layer's shapes under its mask at the start of the level ` +
      `(<code>--kernels auto</code>; CPU ms on a software adapter), and the kernel chosen per phase (${PHASES.join(' / ')}). ` +
      `From level_&lt;k&gt;/sparse-kernels.json.</p>\n` +
      (timed ? figureRow(figs) : '<p>No level was timed (<code>--kernels sparse</code> records choices only).</p>') +
      '\n' +
      scrollable(htmlTable(rows, ['level', 'layer', 'density', 'mode', 'dense', 'compressed rows', 'blocked', 'chosen (fwd / in / wt)', 'speed-up of chosen'])),
  };
}

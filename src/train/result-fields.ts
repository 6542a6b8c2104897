// The numbers of a level's result.json, checked where it is read back (the trainer skips a finished
// level by it; `report` tabulates it): a hand-edited or damaged file must not give epochs_to_best -5.
/** Bounds of each count in result.json: whole numbers, with bestEpoch (1-based; 0 = none) at most epochs. */
export function resultFieldProblem(o: Readonly<Record<string, unknown>>): string | null {
  const whole = (k: string) => typeof o[k] === 'number' && Number.isInteger(o[k]) && (o[k] as number) >= 0;
  for (const k of ['epochs', 'steps', 'bestEpoch']) {
    if (o[k] !== undefined && !whole(k)) return `'${k}' is ${JSON.stringify(o[k])}, not a whole number >= 0`;
  }
  for (const k of ['seconds', 'imagesPerSecond']) {
    const v = o[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) return `'${k}' is ${JSON.stringify(v)}, not a number >= 0`;
  }
  if (typeof o.bestEpoch === 'number' && typeof o.epochs === 'number' && o.bestEpoch > o.epochs) return `'bestEpoch' ${o.bestEpoch} is after the last epoch (${o.epochs})`;
  return null;
}

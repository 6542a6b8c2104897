// Float64 references for the reduction family (src/tensor/ops/reduce.ts). Plain loops, no cleverness.

export type RefReduceOp = 'sum' | 'mean' | 'max' | 'min' | 'argmax' | 'argmin';

export interface RefResult {
  data: Float64Array;
  shape: number[];
  /** Per output: sum of |x| over the reduced elements (scale for float32 error bounds). */
  absSum: Float64Array;
  /** Per output: number of reduced elements. */
  count: number;
}

export function normAxes(rank: number, axes: number | readonly number[] | undefined): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : [...axes];
  return [...new Set(list.map((a) => (a < 0 ? a + Math.max(rank, 1) : a)))].filter((a) => a < rank).sort((x, y) => x - y);
}

/**
 * Reduces `x` (row-major, `shape`) over `axes`. Arg ops return the index in the reduced sub-shape's
 * row-major order (for one axis: the position along it), first index on ties.
 */
export function refReduce(
  op: RefReduceOp,
  x: ArrayLike<number>,
  shape: readonly number[],
  axes: number | readonly number[] | undefined,
  keepdim = false,
): RefResult {
  const rank = shape.length;
  const ax = new Set(normAxes(rank, axes));
  const outShape: number[] = [];
  const keptDims: number[] = [];
  const redDims: number[] = [];
  shape.forEach((d, i) => {
    if (ax.has(i)) {
      redDims.push(i);
      if (keepdim) outShape.push(1);
    } else {
      keptDims.push(i);
      outShape.push(d);
    }
  });
  const nOut = keptDims.reduce((p, d) => p * shape[d], 1);
  const count = redDims.reduce((p, d) => p * shape[d], 1);
  const strides: number[] = new Array(rank);
  let s = 1;
  for (let d = rank - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  const data = new Float64Array(nOut);
  const absSum = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let base = 0;
    let rem = o;
    for (let k = keptDims.length - 1; k >= 0; k--) {
      const d = keptDims[k];
      base += (rem % shape[d]) * strides[d];
      rem = Math.floor(rem / shape[d]);
    }
    let acc = op === 'max' || op === 'argmax' ? -Infinity : op === 'min' || op === 'argmin' ? Infinity : 0;
    let best = -1;
    let abs = 0;
    for (let r = 0; r < count; r++) {
      let off = base;
      let rr = r;
      for (let k = redDims.length - 1; k >= 0; k--) {
        const d = redDims[k];
        off += (rr % shape[d]) * strides[d];
        rr = Math.floor(rr / shape[d]);
      }
      const v = x[off];
      abs += Math.abs(v);
      if (op === 'sum' || op === 'mean') acc += v;
      else if (op === 'max') acc = Math.max(acc, v);
      else if (op === 'min') acc = Math.min(acc, v);
      else if (op === 'argmax' ? v > acc || best < 0 : v < acc || best < 0) {
        acc = v;
        best = r;
      }
    }
    data[o] = op === 'mean' ? acc / count : op === 'argmax' || op === 'argmin' ? best : acc;
    absSum[o] = abs;
  }
  return { data, shape: outShape, absSum, count };
}

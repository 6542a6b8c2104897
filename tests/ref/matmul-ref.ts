// Float64 reference for matmul (src/tensor/ops/matmul.ts): alpha * op(A) op(B) + bias + beta * C.

export interface RefMatmulArgs {
  a: ArrayLike<number>;
  aShape: readonly number[];
  b: ArrayLike<number>;
  bShape: readonly number[];
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  bias?: ArrayLike<number>;
  c?: ArrayLike<number>;
}

export interface RefMatmulResult {
  data: Float64Array;
  shape: number[];
  /** Per output: |alpha| * sum_k |a_ik b_kj| + |bias_j| + |beta c_ij| (scale for error bounds). */
  mag: Float64Array;
}

export function refMatmul(o: RefMatmulArgs): RefMatmulResult {
  const ra = o.aShape.length;
  const rb = o.bShape.length;
  const [a0, a1] = [o.aShape[ra - 2], o.aShape[ra - 1]];
  const [b0, b1] = [o.bShape[rb - 2], o.bShape[rb - 1]];
  const [M, K] = o.transA ? [a1, a0] : [a0, a1];
  const [K2, N] = o.transB ? [b1, b0] : [b0, b1];
  if (K !== K2) throw new Error('refMatmul: inner dims differ');
  const bA = ra === 3 ? o.aShape[0] : 1;
  const bB = rb === 3 ? o.bShape[0] : 1;
  const batch = Math.max(bA, bB);
  const shape = ra === 3 || rb === 3 ? [batch, M, N] : [M, N];
  const alpha = o.alpha ?? 1;
  const beta = o.beta ?? 1;
  const data = new Float64Array(batch * M * N);
  const mag = new Float64Array(batch * M * N);
  for (let bt = 0; bt < batch; bt++) {
    const ao = bA === 1 ? 0 : bt * M * K;
    const bo = bB === 1 ? 0 : bt * K * N;
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        let m = 0;
        for (let k = 0; k < K; k++) {
          const av = o.a[ao + (o.transA ? k * M + i : i * K + k)];
          const bv = o.b[bo + (o.transB ? j * K + k : k * N + j)];
          s += av * bv;
          m += Math.abs(av * bv);
        }
        const idx = bt * M * N + i * N + j;
        let v = alpha * s;
        m *= Math.abs(alpha);
        if (o.bias) {
          v += o.bias[j];
          m += Math.abs(o.bias[j]);
        }
        if (o.c) {
          v += beta * o.c[idx];
          m += Math.abs(beta * o.c[idx]);
        }
        data[idx] = v;
        mag[idx] = m;
      }
  }
  return { data, shape, mag };
}

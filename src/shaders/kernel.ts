// What a kernel is, independent of tensors: WGSL source, the order and kind of its bindings, and the
// rule that turns a problem size into a dispatch grid. src/tensor/launch.ts turns these into pipelines.

/** Binding kinds in @group(0) binding order. Storage bindings come first, the uniform (if any) last. */
export type BindingKind = 'read' | 'write' | 'uniform';

export interface Kernel {
  /** Stable name, used in error messages and profiles. */
  readonly name: string;
  readonly code: string;
  readonly bindings: readonly BindingKind[];
  readonly entry?: string;
}

export type Grid = readonly [number, number, number];

/** Dawn's (and WebGPU's default) per-dimension workgroup-count limit. */
export const MAX_GROUPS_PER_DIM = 65535;

/**
 * A 1-D problem of `groups` workgroups spread over x and y so it never exceeds the per-dimension limit.
 * Kernels recover the linear workgroup index as `wid.x + wid.y * nwg.x` (see LINEAR_INDEX_WGSL).
 */
export function grid1d(groups: number): Grid {
  if (groups <= MAX_GROUPS_PER_DIM) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / MAX_GROUPS_PER_DIM);
  return [Math.ceil(groups / y), y, 1];
}

/** Workgroups needed for `n` items at `perGroup` items each, as a 1-D grid. */
export function gridFor(n: number, perGroup: number): Grid {
  return grid1d(Math.ceil(n / perGroup));
}

/** WGSL for the global linear thread index of a grid1d dispatch with workgroup size `wg`. */
export function linearIndexWgsl(wg: number): string {
  return `(gid.x + gid.y * nwg.x * ${wg}u)`;
}

/** The builtins every grid1d kernel takes. */
export const GRID_BUILTINS_WGSL =
  '@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>';

/** WGSL storage type for a tensor dtype. */
export function wgslType(dtype: 'f32' | 'i32' | 'u32'): string {
  return dtype;
}

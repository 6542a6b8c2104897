// Masks: an explicit 0/1 tensor beside every prunable weight (conv and linear `.weight`; never biases
// or batch norm). Masks live on the GPU (forward multiplies by them, the optimizer keeps pruned weights
// and their state at exactly zero) and on the host (pruning decisions are exact integer bookkeeping).
//
// Files use torch.nn.utils.prune's buffer names: `<layer>.weight_mask`, so a mask saved here can be
// applied in PyTorch with prune.custom_from_mask and vice versa.
import type { Module } from '../nn/module.js';
import { Conv2d, Linear } from '../nn/layers.js';
import { fromArray, keep, type Tensor } from '../tensor/tensor.js';
import { saveSafetensors, type HostTensor } from '../io/safetensors.js';
import { readF32Tensors } from '../nn/checkpoint.js';
import { attachSparse, detachSparse } from '../nn/sparse.js';
import type { KernelMode } from '../tensor/sparse-plan.js';

/** A prunable weight: its state-dict key (e.g. `conv1.weight`), shape and layer. */
export interface PrunableWeight {
  key: string;
  shape: number[];
  size: number;
  layer: Conv2d | Linear;
}

/**
 * The prunable weights of a model in state-dict order. The last linear layer (the classifier) is
 * excluded unless `pruneLast` (LTH practice varies; the study prunes "conv and linear weights").
 */
export function prunableWeights(model: Module, pruneLast = false): PrunableWeight[] {
  const out: PrunableWeight[] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof Conv2d || m instanceof Linear) out.push({ key: `${name}.weight`, shape: [...m.weight.shape], size: m.weight.size, layer: m });
  }
  if (!pruneLast) {
    for (let i = out.length - 1; i >= 0; i--) {
      if (out[i].layer instanceof Linear) {
        out.splice(i, 1);
        break;
      }
    }
  }
  return out;
}

/** Host masks by weight key: Uint8Array of 0/1 per element. */
export type HostMasks = Map<string, Uint8Array>;

/** All-kept masks; only names and sizes are read, so a `WeightSpec` of ticketlab/testing will do. */
export function onesMasks(ws: readonly Pick<PrunableWeight, 'key' | 'size'>[]): HostMasks {
  return new Map(ws.map((w) => [w.key, new Uint8Array(w.size).fill(1)]));
}

export interface LayerSparsity {
  key: string;
  total: number;
  kept: number;
  pruned: number;
  sparsity: number;
}

export interface SparsityReport {
  layers: LayerSparsity[];
  total: number;
  kept: number;
  pruned: number;
  /** Pruned fraction of the prunable weights. */
  sparsity: number;
  /** Parameters left in the whole model (prunable kept + everything not prunable). */
  parametersLeft: number;
  parameters: number;
}

export function countKept(m: Uint8Array): number {
  let k = 0;
  for (let i = 0; i < m.length; i++) k += m[i];
  return k;
}

export function sparsityReport(masks: HostMasks, totalParameters: number): SparsityReport {
  const layers: LayerSparsity[] = [];
  let total = 0;
  let kept = 0;
  for (const [key, m] of masks) {
    const k = countKept(m);
    layers.push({ key, total: m.length, kept: k, pruned: m.length - k, sparsity: m.length ? (m.length - k) / m.length : 0 });
    total += m.length;
    kept += k;
  }
  return {
    layers,
    total,
    kept,
    pruned: total - kept,
    sparsity: total ? (total - kept) / total : 0,
    parametersLeft: totalParameters - (total - kept),
    parameters: totalParameters,
  };
}

/**
 * Uploads host masks and attaches them to their layers (forward masking), with the compressed layouts
 * the kernel mode needs (nn/sparse.ts; none for 'dense'). Returns the GPU masks.
 */
export function attachMasks(ws: readonly PrunableWeight[], masks: HostMasks, kernels: KernelMode = 'dense'): Map<string, Tensor> {
  const gpu = new Map<string, Tensor>();
  for (const w of ws) {
    const m = masks.get(w.key);
    if (!m) throw new Error(`no mask for '${w.key}'`);
    if (m.length !== w.size) throw new Error(`mask for '${w.key}' has ${m.length} entries, the weight ${w.size}`);
    const t = keep(fromArray(Float32Array.from(m), w.shape));
    w.layer.mask?.dispose();
    w.layer.mask = t;
    attachSparse(w.layer, m, kernels);
    gpu.set(w.key, t);
  }
  return gpu;
}

export function detachMasks(ws: readonly PrunableWeight[]): void {
  for (const w of ws) {
    w.layer.mask?.dispose();
    w.layer.mask = null;
    detachSparse(w.layer);
  }
}

/** Saves masks as `<layer>.weight_mask` F32 0/1 tensors (torch.nn.utils.prune's names). */
export async function saveMasks(file: string, ws: readonly PrunableWeight[], masks: HostMasks, metadata: Record<string, string> = {}): Promise<void> {
  const t: Record<string, HostTensor> = {};
  for (const w of ws) {
    const m = masks.get(w.key);
    if (!m) throw new Error(`no mask for '${w.key}'`);
    t[`${w.key}_mask`] = { dtype: 'F32', shape: w.shape, data: Float32Array.from(m) };
  }
  await saveSafetensors(file, t, { ticketlab: 'masks', ...metadata });
}

/**
 * The masks a file holds for a model, whether or not it pruned the last linear layer: the prunable
 * weights (the last linear included) that have a `<key>_mask` in the file. Errors name the file.
 */
export async function loadMasksOf(file: string, model: Module): Promise<{ ws: PrunableWeight[]; masks: HostMasks }> {
  const { tensors } = await readF32Tensors(file);
  const ws = prunableWeights(model, true).filter((w) => tensors.has(`${w.key}_mask`));
  if (!ws.length) throw new Error(`${file}: no '<layer>.weight_mask' for this model`);
  return { ws, masks: await loadMasks(file, ws) };
}

/** Loads masks saved by saveMasks (or PyTorch's `*.weight_mask` buffers); errors name file and key. */
export async function loadMasks(file: string, ws: readonly PrunableWeight[]): Promise<HostMasks> {
  const { tensors } = await readF32Tensors(file);
  const out: HostMasks = new Map();
  for (const w of ws) {
    const t = tensors.get(`${w.key}_mask`);
    if (!t) throw new Error(`${file}: no mask '${w.key}_mask'`);
    if (t.data.length !== w.size) throw new Error(`${file}: mask '${w.key}_mask' has ${t.data.length} entries, the weight ${w.size}`);
    const m = new Uint8Array(w.size);
    for (let i = 0; i < w.size; i++) {
      const v = t.data[i];
      if (v !== 0 && v !== 1) throw new Error(`${file}: mask '${w.key}_mask' holds ${v} at ${i}; masks are 0/1`);
      m[i] = v;
    }
    out.set(w.key, m);
  }
  return out;
}

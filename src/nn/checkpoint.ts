// Model weights and masks as .safetensors with PyTorch state-dict keys, written atomically.
import { encodeSafetensors, loadSafetensors, saveSafetensors, type HostTensor } from '../io/safetensors.js';
import { writeFileOnce } from '../io/atomic.js';
import type { HostTensorF32, Module } from './module.js';
import type { Tensor } from '../tensor/tensor.js';

/** Reads every tensor of a .safetensors file as float32 host tensors (F64/F16/BF16/ints widened). */
export async function readF32Tensors(file: string): Promise<{ tensors: Map<string, HostTensorF32>; metadata: Record<string, string> }> {
  const { tensors, metadata } = await loadSafetensors(file, { int64: 'i32-if-safe' });
  const out = new Map<string, HostTensorF32>();
  for (const [k, t] of Object.entries(tensors)) {
    const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
    out.set(k, { shape: t.shape, data });
  }
  return { tensors: out, metadata };
}

/** Host copies of named GPU tensors, as F32 safetensors entries. */
export async function toHostTensors(named: Iterable<[string, Tensor]>): Promise<Record<string, HostTensor>> {
  const out: Record<string, HostTensor> = {};
  for (const [k, t] of named) out[k] = { dtype: 'F32', shape: [...t.shape], data: (await t.toArray()) as Float32Array };
  return out;
}

/** Saves a model's state dict (parameters and buffers) to `file`. */
export async function saveModel(file: string, model: Module, metadata: Record<string, string> = {}): Promise<void> {
  await saveSafetensors(file, await toHostTensors(model.stateDict()), { format: 'pt', ...metadata });
}

/**
 * Saves a model's state dict to a file that is written once and never replaced (init, rewind and start
 * weights: the points later levels rewind to). An existing file with the same bytes is kept; one with
 * other bytes is an error naming it.
 */
export async function saveModelOnce(file: string, model: Module, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileOnce(file, encodeSafetensors(await toHostTensors(model.stateDict()), { format: 'pt', ...metadata }, file));
}

/** The first tensor holding NaN or +-Infinity, with how many such values it has; null when all are finite. */
export function firstNonFinite(named: Iterable<[string, { data: ArrayLike<number> }]>): { key: string; count: number; total: number } | null {
  for (const [key, t] of named) {
    let count = 0;
    for (let i = 0; i < t.data.length; i++) if (!Number.isFinite(t.data[i])) count++;
    if (count) return { key, count, total: t.data.length };
  }
  return null;
}

/** Loads a state dict file into a model; errors name the file and the key. */
export async function loadModel(file: string, model: Module, strict = true): Promise<Record<string, string>> {
  const { tensors, metadata } = await readF32Tensors(file);
  try {
    model.loadStateDict(tensors, strict);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  return metadata;
}

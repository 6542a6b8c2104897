// Model weights and masks as .safetensors with PyTorch state-dict keys, written atomically.
import { loadSafetensors, saveSafetensors, type HostTensor } from '../io/safetensors.js';
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

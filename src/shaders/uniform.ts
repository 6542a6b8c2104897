// A kernel's uniform struct and its host packer from one schema: the WGSL `struct P` text and the word
// layout the launcher writes are generated from the same field list, so a field added, removed or
// reordered on one side cannot silently shift every value after it on the other.
//
// Fields are 4-byte scalars (u32, i32, f32) in declaration order; the struct is padded to a multiple of
// 16 bytes (WGSL's uniform buffers are read in vec4 granules). Kernels with vec4/array fields keep their
// own layout (elementwise, reduce) for now.

export type UniformScalar = 'u32' | 'i32' | 'f32';

export class UniformStruct<K extends string> {
  /** `struct P { ... }`, ready to paste into a kernel. */
  readonly wgsl: string;
  /** 4-byte words the packed struct takes (a multiple of 4). */
  readonly words: number;

  constructor(readonly fields: readonly (readonly [K, UniformScalar])[]) {
    const names = new Set<string>();
    for (const [n] of fields) {
      if (names.has(n)) throw new Error(`uniform struct: field '${n}' twice`);
      names.add(n);
    }
    this.words = Math.max(4, Math.ceil(fields.length / 4) * 4);
    const pad = Array.from({ length: this.words - fields.length }, (_, i) => `_pad${i}: u32`);
    const decl = [...fields.map(([n, t]) => `${n}: ${t}`), ...pad];
    const lines: string[] = [];
    for (let i = 0; i < decl.length; i += 4) lines.push(`  ${decl.slice(i, i + 4).join(', ')},`);
    this.wgsl = `struct P {\n${lines.join('\n')}\n}`;
  }

  /** The struct's bytes for `values` (every field required; u32 fields must be non-negative integers). */
  pack(values: Readonly<Record<K, number>>): Uint32Array {
    const u = new Uint32Array(this.words);
    const f = new Float32Array(u.buffer);
    const i = new Int32Array(u.buffer);
    this.fields.forEach(([n, t], at) => {
      const v = values[n];
      if (typeof v !== 'number' || Number.isNaN(v)) throw new Error(`uniform struct: field '${n}' is ${String(v)}`);
      if (t === 'f32') f[at] = v;
      else if (t === 'i32') i[at] = v | 0;
      else {
        if (!(Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) throw new Error(`uniform struct: u32 field '${n}' is ${v}`);
        u[at] = v;
      }
    });
    return u;
  }
}

/** A schema from `[name, type]` pairs; the field names become the packer's keys. */
export function uniformStruct<const F extends readonly (readonly [string, UniformScalar])[]>(fields: F): UniformStruct<F[number][0]> {
  return new UniformStruct<F[number][0]>(fields);
}

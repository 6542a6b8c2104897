// Prints the WebGPU adapter Dawn finds (one line) and exits 0, or explains and exits 1.
// Plain JS so that it runs before any TypeScript tooling exists.
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
process.env.XDG_RUNTIME_DIR ??= '/tmp';
try {
  const gpu = create([]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) { console.error('no WebGPU adapter'); process.exit(1); }
  const i = adapter.info ?? {};
  console.log(`${i.vendor || '?'} ${i.device || i.description || '?'} (${i.architecture || '?'})`);
  process.exit(0);
} catch (e) {
  console.error(String(e?.message ?? e));
  process.exit(1);
}

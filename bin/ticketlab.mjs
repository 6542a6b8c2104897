#!/usr/bin/env node
// Entry point: runs the TypeScript CLI through tsx's loader, so no build step stands between an edit
// and a run.
process.env.XDG_RUNTIME_DIR ??= '/tmp';
const { register } = await import('tsx/esm/api');
register();
await import('../src/cli/main.ts');

// `npm run build` (and `npm pack`, through prepack): compiles src/ to JavaScript + .d.ts in dist/ with
// tsconfig.build.json, from a clean folder so no file of a removed module lingers in the package.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';

fs.rmSync('dist', { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });

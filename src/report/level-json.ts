// One reader for the per-level JSON files the report draws from (level_<k>/profile.json,
// level_<k>/sparse-kernels.json): every level folder of a run that has the file, parsed, in level
// order; a damaged file is a one-line error naming it and how to write it again.
import * as fs from 'node:fs';
import { levelDir, parseLevelName, runFile, type RunFile } from '../io/run-paths.js';

/**
 * `convert(value, levelDir)` turns a level's parsed file into a record (null leaves the level out);
 * `redo` completes "not valid JSON; ..." with what writes the file again.
 */
export function readLevelJson<T>(run: string, name: RunFile, redo: string, convert: (value: unknown, dir: string) => T | null): (T & { level: number })[] {
  if (!fs.existsSync(run)) return [];
  const out: (T & { level: number })[] = [];
  for (const entry of fs.readdirSync(run)) {
    const k = parseLevelName(entry);
    if (k === null) continue;
    const dir = levelDir(run, k);
    const file = runFile(dir, name);
    if (!fs.existsSync(file)) continue;
    let value: unknown;
    try {
      value = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      throw new Error(`${file}: not valid JSON; ${redo}`);
    }
    const rec = convert(value, dir);
    if (rec !== null) out.push({ ...rec, level: k });
  }
  return out.sort((a, b) => a.level - b.level);
}

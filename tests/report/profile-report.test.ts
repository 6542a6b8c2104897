// The report's kernel-profile section: time per layer vs IMP level from level_<k>/profile.json.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { profileSection, readLevelProfiles } from '../../src/report/profile-report.js';
import type { LevelProfileFile, ProfileRow } from '../../src/train/profile.js';

function row(layer: string, phase: ProfileRow['phase'], ms: number, density: number | null): ProfileRow {
  return { layer, phase, op: 'conv.fwd', variant: 'direct', shape: 's', density, ms, gflops: 1, dispatches: 1, bytesRead: 64, bytesWritten: 32 };
}

describe('profileSection', () => {
  it('tabulates and plots each layer per level, in level order; null without profiles', () => {
    const run = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-prof-'));
    expect(profileSection({ dir: run, name: 'r' })).toBeNull();
    const write = (k: number, convMs: number, density: number) => {
      fs.mkdirSync(path.join(run, `level_${k}`), { recursive: true });
      const rows = [row('conv1', 'forward', convMs, density), row('conv1', 'weight-grad', 1, density), row('bn1', 'forward', 0.5, null)];
      const f: LevelProfileFile = { model: 'meso4', size: 64, batch: 8, level: k, adapter: 'test <adapter>', gpuMs: convMs + 1.5, wallMs: 9, rows };
      fs.writeFileSync(path.join(run, `level_${k}`, 'profile.json'), JSON.stringify(f));
    };
    write(2, 1, 0.64);
    write(0, 3, 1);
    expect(readLevelProfiles(run).map((p) => p.level)).toEqual([0, 2]);
    const s = profileSection({ dir: run, name: 'r' })!;
    expect(s.html).toContain('<svg');
    // conv1 sums its phases: 3 + 1 at level 0, 1 + 1 at level 2, with the density in brackets.
    expect(s.html).toMatch(/conv1<\/td>\s*<td[^>]*>4\.00 \(100%\)<\/td>\s*<td[^>]*>2\.00 \(64%\)/);
    expect(s.html).toContain('test &lt;adapter&gt;');
    fs.writeFileSync(path.join(run, 'level_2', 'profile.json'), '{');
    expect(() => readLevelProfiles(run)).toThrow(/level_2\/profile.json: not valid JSON/);
  });
});

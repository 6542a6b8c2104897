// What `ticketlab faces` reads from each layout: labels, splits, groups (no detection here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { listFaceSources } from '../../src/faces/sources.js';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-sources-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function touch(root: string, ...files: string[]): string {
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), 'x');
  }
  return root;
}

describe('face sources', () => {
  it('Celeb-DF: the test list is the test split, the rest splits by identity', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => i);
    const root = touch(
      path.join(tmp, 'celeb'),
      ...ids.map((i) => `Celeb-real/id${i}_0000.mp4`),
      ...ids.map((i) => `Celeb-synthesis/id${i}_id${(i + 1) % 30}_0000.mp4`),
      'YouTube-real/00000.mp4',
    );
    fs.writeFileSync(path.join(root, 'List_of_testing_videos.txt'), '1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n1 YouTube-real/00000.mp4\n');
    const { layout, sources } = await listFaceSources(root, 0);
    expect(layout).toBe('celebdf');
    expect(sources).toHaveLength(61);
    const test = sources.filter((s) => s.split === 'test').map((s) => s.key).sort();
    expect(test).toEqual(['Celeb-real/id0_0000.mp4', 'Celeb-synthesis/id0_id1_0000.mp4', 'YouTube-real/00000.mp4']);
    expect(sources.find((s) => s.key === 'Celeb-synthesis/id3_id4_0000.mp4')!.label).toBe(1);
    // Outside the test list, one identity's real and fake videos share a split.
    for (const i of ids.slice(1)) {
      const a = sources.find((s) => s.key === `Celeb-real/id${i}_0000.mp4`)!;
      const b = sources.find((s) => s.key === `Celeb-synthesis/id${i}_id${(i + 1) % 30}_0000.mp4`)!;
      expect(a.split).toBe(b.split);
      expect(['train', 'val']).toContain(a.split);
    }
    expect(new Set(sources.filter((s) => s.split !== 'test').map((s) => s.split))).toEqual(new Set(['train', 'val']));
  });

  it('a folder: labels and splits from the path, videos and photos, one-line errors', async () => {
    const root = touch(path.join(tmp, 'folder'), 'train/real/a.mp4', 'train/Fake/b.MOV', 'Test/real/c.jpg', 'misc/fake/d.png', 'real/notes.txt');
    const { layout, sources } = await listFaceSources(root, 0);
    expect(layout).toBe('folder');
    expect(sources.map((s) => [s.key, s.kind, s.label, s.split])).toEqual([
      ['Test/real/c.jpg', 'image', 0, 'test'],
      ['misc/fake/d.png', 'image', 1, sources[1].split],
      ['train/Fake/b.MOV', 'video', 1, 'train'],
      ['train/real/a.mp4', 'video', 0, 'train'],
    ]);
    touch(root, 'other/e.mp4');
    await expect(listFaceSources(root, 0)).rejects.toThrow(/other\/e\.mp4: no real\/ or fake\/ folder on its path \(1 such files\)/);
    await expect(listFaceSources(path.join(tmp, 'nope'))).rejects.toThrow(/nope: no such folder/);
    await expect(listFaceSources(touch(path.join(tmp, 'empty'), 'real/readme.md'))).rejects.toThrow(/no videos .* or images found/);
  });
});

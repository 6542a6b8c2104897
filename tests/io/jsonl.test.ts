import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { appendJsonl, appendJsonlSync, parseJsonl, readJsonl, readJsonlSync } from '../../src/io/jsonl.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ticketlab-jsonl-'));
}

describe('appendJsonl / readJsonl', () => {
  it('appends one line per record, creating folders', async () => {
    const file = path.join(tmpDir(), 'level_0', 'metrics.jsonl');
    await appendJsonl(file, { epoch: 0, loss: 0.5 });
    appendJsonlSync(file, { epoch: 1, loss: 0.25, note: 'line\nbreak' });
    expect(fs.readFileSync(file, 'utf8')).toBe('{"epoch":0,"loss":0.5}\n{"epoch":1,"loss":0.25,"note":"line\\nbreak"}\n');
    expect(await readJsonl(file)).toEqual({
      records: [
        { epoch: 0, loss: 0.5 },
        { epoch: 1, loss: 0.25, note: 'line\nbreak' },
      ],
      dropped: 0,
    });
  });

  it('drops a torn last line and says so', async () => {
    const file = path.join(tmpDir(), 'm.jsonl');
    fs.writeFileSync(file, '{"a":1}\n{"a":2}\n{"a":');
    expect(await readJsonl(file)).toEqual({ records: [{ a: 1 }, { a: 2 }], dropped: 1 });
    expect(readJsonlSync(file).dropped).toBe(1);
  });

  it('keeps a complete last record that only lacks its newline, but not a bare-number prefix', () => {
    expect(parseJsonl('{"a":1}\n{"a":2}')).toEqual({ records: [{ a: 1 }, { a: 2 }], dropped: 0 });
    expect(parseJsonl('{"a":1}\n12')).toEqual({ records: [{ a: 1 }], dropped: 1 });
  });

  it('skips blank lines and CRLF endings', () => {
    expect(parseJsonl('{"a":1}\r\n\n  \n{"b":2}\r\n')).toEqual({ records: [{ a: 1 }, { b: 2 }], dropped: 0 });
    expect(parseJsonl('')).toEqual({ records: [], dropped: 0 });
  });

  it('a bad line in the middle is corruption: it throws naming file and line', async () => {
    const file = path.join(tmpDir(), 'm.jsonl');
    fs.writeFileSync(file, '{"a":1}\n{oops\n{"a":3}\n');
    await expect(readJsonl(file)).rejects.toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: invalid JSON line`));
  });

  it('appending after a torn tail cuts the fragment off first', async () => {
    const file = path.join(tmpDir(), 'm.jsonl');
    fs.writeFileSync(file, '{"a":1}\n{"a":2,"b');
    expect(await appendJsonl(file, { a: 3 })).toEqual({ droppedTornBytes: 9 });
    expect(fs.readFileSync(file, 'utf8')).toBe('{"a":1}\n{"a":3}\n');
    // A complete but unterminated record is kept and terminated instead.
    fs.writeFileSync(file, '{"a":1}');
    expect(appendJsonlSync(file, { a: 2 })).toEqual({ droppedTornBytes: 0 });
    expect(fs.readFileSync(file, 'utf8')).toBe('{"a":1}\n{"a":2}\n');
    // A file that is nothing but a fragment.
    fs.writeFileSync(file, '{"a');
    await appendJsonl(file, { a: 9 });
    expect(fs.readFileSync(file, 'utf8')).toBe('{"a":9}\n');
  });

  it('repairs a torn tail longer than the read-back chunk', async () => {
    const file = path.join(tmpDir(), 'm.jsonl');
    fs.writeFileSync(file, `{"a":1}\n{"long":"${'x'.repeat(20_000)}`);
    await appendJsonl(file, { a: 2 });
    expect(await readJsonl(file)).toEqual({ records: [{ a: 1 }, { a: 2 }], dropped: 0 });
  });

  it('rejects non-object records', async () => {
    const file = path.join(tmpDir(), 'm.jsonl');
    await expect(appendJsonl(file, null as unknown as object)).rejects.toThrow(/must be an object/);
  });

  it('property: a file cut at any byte reads as the records that fit; appending then repairs it', async () => {
    const dir = tmpDir();
    let run = 0;
    const recordArb = fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 });
    await fc.assert(
      fc.asyncProperty(fc.array(recordArb, { minLength: 1, maxLength: 6 }), fc.nat(), async (records, cutSeed) => {
        const file = path.join(dir, `p${run++}.jsonl`);
        for (const r of records) appendJsonlSync(file, r);
        const full = fs.readFileSync(file);
        const cut = cutSeed % (full.length + 1);
        fs.writeFileSync(file, full.subarray(0, cut));

        // JSON normalises some values (-0 becomes 0), so compare with what JSON can hold.
        const normal = records.map((r) => JSON.parse(JSON.stringify(r)) as unknown);
        let end = 0;
        let fitting = 0;
        for (const r of records) {
          end += Buffer.byteLength(JSON.stringify(r));
          if (end <= cut) fitting++;
          end += 1; // newline
        }
        const read = await readJsonl(file);
        expect(read.records).toEqual(normal.slice(0, fitting));
        const lastLineStart = full.subarray(0, cut).lastIndexOf(0x0a) + 1;
        // A fragment remains unless the cut fell on a line start or exactly at the end of a record.
        const torn = cut > lastLineStart && full[cut] !== 0x0a;
        expect(read.dropped).toBe(torn ? 1 : 0);

        await appendJsonl(file, { tail: true });
        expect(await readJsonl(file)).toEqual({ records: [...normal.slice(0, fitting), { tail: true }], dropped: 0 });
      }),
      { numRuns: 120 },
    );
  });
});


// JSON Lines logs (metrics.jsonl): one record per line, appended as a run goes. A run can be killed at
// any moment, so the reader forgives a torn final line and the writer repairs one before appending.
// One writer per file is assumed (a run owns its folder).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { writeError } from './atomic.js';

export interface AppendResult {
  /** Bytes of a torn (newline-less, unparseable) tail that were cut off before appending; usually 0. */
  droppedTornBytes: number;
}

export interface JsonlContents<T> {
  records: T[];
  /** Torn trailing lines that were skipped (0 or 1). */
  dropped: number;
}

const NEWLINE = 0x0a;

function encodeLine(record: object, file: string): Buffer {
  if (record === null || typeof record !== 'object') {
    throw new TypeError(`${file}: a JSONL record must be an object or array`);
  }
  // Plain JSON.stringify never emits a raw newline (it escapes them inside strings), so one record is
  // exactly one line. NaN/Infinity become null: JSON has no spelling for them.
  return Buffer.from(JSON.stringify(record) + '\n', 'utf8');
}

// Length the file should have so that it ends on a line boundary: a killed writer can leave a partial
// record, and appending after it would glue two records into one unreadable line in the middle of the log.
function repairedLength(content: Buffer): number {
  if (content.length === 0 || content[content.length - 1] === NEWLINE) return content.length;
  const lastNl = content.lastIndexOf(NEWLINE);
  const tail = content.subarray(lastNl + 1).toString('utf8');
  if (parsesAsRecord(tail)) return content.length; // complete record that merely lacks its newline
  return lastNl + 1;
}

function parsesAsRecord(text: string): boolean {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object';
  } catch {
    return false;
  }
}

// Reads only the tail, so appending to a long log costs O(last line), not O(file).
async function tailOf(handle: fsp.FileHandle, size: number): Promise<{ start: number; bytes: Buffer }> {
  let chunk = 4096;
  for (;;) {
    const start = Math.max(0, size - chunk);
    const bytes = Buffer.alloc(size - start);
    await handle.read(bytes, 0, bytes.length, start);
    // Need a newline before the last byte (or the whole file) to know where the last line begins.
    if (start === 0 || bytes.subarray(0, bytes.length - 1).includes(NEWLINE)) return { start, bytes };
    chunk *= 4;
  }
}

function tailOfSync(fd: number, size: number): { start: number; bytes: Buffer } {
  let chunk = 4096;
  for (;;) {
    const start = Math.max(0, size - chunk);
    const bytes = Buffer.alloc(size - start);
    fs.readSync(fd, bytes, 0, bytes.length, start);
    if (start === 0 || bytes.subarray(0, bytes.length - 1).includes(NEWLINE)) return { start, bytes };
    chunk *= 4;
  }
}

/** Appends one record as a line and fsyncs, creating the file (and its folder) if needed. */
export async function appendJsonl(file: string, record: object): Promise<AppendResult> {
  const line = encodeLine(record, file);
  try {
    return await appendLine(file, line);
  } catch (err) {
    throw writeError(file, err);
  }
}

async function appendLine(file: string, line: Buffer): Promise<AppendResult> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  // 'a+' so the tail can be read; writes with 'a' flags always go to the end regardless of position.
  const handle = await fsp.open(file, 'a+');
  try {
    const { size } = await handle.stat();
    let droppedTornBytes = 0;
    if (size > 0) {
      const { start, bytes } = await tailOf(handle, size);
      const keep = start + repairedLength(bytes);
      if (keep < size) {
        await handle.truncate(keep);
        droppedTornBytes = size - keep;
      } else if (bytes[bytes.length - 1] !== NEWLINE) {
        await handle.write(Buffer.from('\n'));
      }
    }
    await handle.write(line);
    await handle.sync();
    return { droppedTornBytes };
  } finally {
    await handle.close();
  }
}

export function appendJsonlSync(file: string, record: object): AppendResult {
  const line = encodeLine(record, file);
  try {
    return appendLineSync(file, line);
  } catch (err) {
    throw writeError(file, err);
  }
}

function appendLineSync(file: string, line: Buffer): AppendResult {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, 'a+');
  try {
    const { size } = fs.fstatSync(fd);
    let droppedTornBytes = 0;
    if (size > 0) {
      const { start, bytes } = tailOfSync(fd, size);
      const keep = start + repairedLength(bytes);
      if (keep < size) {
        fs.ftruncateSync(fd, keep);
        droppedTornBytes = size - keep;
      } else if (bytes[bytes.length - 1] !== NEWLINE) {
        fs.writeSync(fd, '\n');
      }
    }
    fs.writeSync(fd, line);
    fs.fsyncSync(fd);
    return { droppedTornBytes };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Parses JSONL text. An unterminated last line that does not parse is a torn write and is dropped
 * (counted in `dropped`); a bad line anywhere else is real corruption and throws, naming file and line.
 * Blank lines are skipped. The type parameter is trusted, not checked.
 */
export function parseJsonl<T = unknown>(text: string, file = '<jsonl>'): JsonlContents<T> {
  const lines = text.split('\n');
  const terminated = text.endsWith('\n');
  // After a final '\n', split leaves an empty string that is not a line.
  if (terminated) lines.pop();
  const records: T[] = [];
  let dropped = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === '') continue;
    const isTail = i === lines.length - 1 && !terminated;
    // A prefix of a record can itself be valid JSON ("12" of "123"), so an unterminated tail counts as
    // complete only when it is an object or array, which no proper prefix of one can be.
    if (isTail && !parsesAsRecord(line)) {
      dropped++;
      continue;
    }
    try {
      records.push(JSON.parse(line) as T);
    } catch (err) {
      const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new Error(`${file}:${i + 1}: invalid JSON line: ${reason}`);
    }
  }
  return { records, dropped };
}

export async function readJsonl<T = unknown>(file: string): Promise<JsonlContents<T>> {
  return parseJsonl<T>(await fsp.readFile(file, 'utf8'), file);
}

export function readJsonlSync<T = unknown>(file: string): JsonlContents<T> {
  return parseJsonl<T>(fs.readFileSync(file, 'utf8'), file);
}

// JSON that round-trips every number: plain JSON writes Infinity, -Infinity and NaN as `null`, so a
// loop state holding "best validation loss so far = Infinity" came back as null and `loss < null` was
// false for ever after (issue 14). Non-finite numbers are written as {"$number": "Infinity"} objects,
// which no finite value and no ordinary record uses, and read back as numbers.

const TAG = '$number';
const SPELLINGS: Record<string, number> = { Infinity: Infinity, '-Infinity': -Infinity, NaN: NaN };

/** JSON.stringify that keeps Infinity, -Infinity and NaN (see the file comment). */
export function stringifyExact(value: unknown): string {
  const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? { [TAG]: String(v) } : v));
  if (text === undefined) throw new TypeError(`value of type ${typeof value} is not JSON-serialisable`);
  return text;
}

/** JSON.parse that turns the objects stringifyExact writes for non-finite numbers back into numbers. */
export function parseExact(text: string): unknown {
  return JSON.parse(text, (_k, v: unknown) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const keys = Object.keys(v);
      const s = (v as Record<string, unknown>)[TAG];
      if (keys.length === 1 && typeof s === 'string' && Object.prototype.hasOwnProperty.call(SPELLINGS, s)) return SPELLINGS[s];
    }
    return v;
  });
}

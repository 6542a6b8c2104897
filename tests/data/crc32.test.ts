// The decoded cache's checksum: the native CRC-32 (where node has one) against the JavaScript twin.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32, crc32Js } from '../../src/data/crc32.js';

describe('crc32', () => {
  it('gives the standard check value and agrees with the table-driven twin on random bytes and splits', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Js(check)).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(), (data, cut) => {
        const whole = crc32Js(data);
        expect(crc32(data)).toBe(whole);
        const k = data.length ? cut % data.length : 0;
        expect(crc32(data.subarray(k), crc32(data.subarray(0, k)))).toBe(whole);
        expect(crc32Js(data.subarray(k), crc32Js(data.subarray(0, k)))).toBe(whole);
      }),
      { numRuns: 200 },
    );
  });

  it('changes with every single-bit flip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 500 }), fc.nat(), (data, bit) => {
        const flipped = Uint8Array.from(data);
        flipped[(bit >>> 3) % data.length] ^= 1 << (bit & 7);
        expect(crc32(flipped)).not.toBe(crc32(data));
      }),
      { numRuns: 200 },
    );
  });
});

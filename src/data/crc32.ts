// CRC-32 (the zlib/PNG polynomial) of byte ranges: the decoded cache's per-image checksum.
//
// Why CRC-32 and not a cryptographic hash: it only has to catch damage (bit flips, torn pages), not an
// adversary, and node's zlib computes it with the CPU's carry-less multiply at several GB/s, a small
// fraction of a warm epoch's cost. Node releases before 20.15 lack zlib.crc32; there a table-driven
// JavaScript twin (same values, a few hundred MB/s) takes over.
import * as zlib from 'node:zlib';

type Crc = (data: Uint8Array, value?: number) => number;

let table: Uint32Array | null = null;

/** Byte-at-a-time CRC-32 (reflected, polynomial 0xEDB88320), the reference for the native one. */
export function crc32Js(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~value >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const native = (zlib as unknown as { crc32?: Crc }).crc32;

/** CRC-32 of `data` (continuing from `value`), as an unsigned 32-bit integer. */
export const crc32: Crc = native ? (data, value = 0) => native(data, value) >>> 0 : crc32Js;

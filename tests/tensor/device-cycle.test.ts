// Closing and reopening the device in one process (tests, library users, commands run in-process):
// every cycle must compute correctly. The close hooks once ran only at the first close, so the third
// device got buffers and readback staging of the destroyed second one and the process crashed.
import { describe, expect, it } from 'vitest';
import { closeDevice, initDevice } from '../../src/tensor/device.js';
import { fromArray, matmul } from '../../src/tensor/index.js';

describe('closeDevice / initDevice cycles', () => {
  it('five cycles of open, compute, read back, close give the same exact product', async () => {
    const n = 24;
    const a = new Float32Array(n * n).map((_, i) => ((i * 7) % 13) - 6);
    const want = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) want[i * n + j] += a[i * n + k] * a[k * n + j];
    for (let cycle = 0; cycle < 5; cycle++) {
      await initDevice();
      const x = fromArray(a, [n, n]);
      const y = matmul(x, x);
      // Small integers: the float32 product is exact, whatever the summation order.
      expect(Array.from(await y.toArray()), `cycle ${cycle}`).toEqual(Array.from(want));
      x.dispose();
      y.dispose();
      closeDevice();
      (globalThis as { gc?: () => void }).gc?.();
    }
    await initDevice(); // leave the file's device open, as the setup file does
  });
});

// Bounded queueing: a loop that ends each step with queue.endStep(bound) never has more than `bound`
// steps submitted and unfinished, whatever the speed of the device.
import { beforeAll, describe, expect, it } from 'vitest';
import { fill, initDevice, matmul, queue, tidy } from '../../src/tensor/index.js';

beforeAll(async () => {
  await initDevice();
});

describe('queue.endStep', () => {
  for (const bound of [1, 2, 3]) {
    it(`keeps at most ${bound} step(s) in flight`, async () => {
      const a = fill([96, 96], 0.01);
      for (let i = 0; i < 10; i++) {
        tidy(() => {
          // Enough work per step that the host would otherwise run ahead.
          let x = a;
          for (let k = 0; k < 6; k++) x = matmul(x, a);
        });
        await queue.endStep(bound);
        expect(queue.stepsInFlight).toBeLessThanOrEqual(bound);
      }
      await queue.sync();
      // Once synced everything has finished.
      await new Promise((r) => setTimeout(r, 0));
      expect(queue.stepsInFlight).toBe(0);
      a.dispose();
    });
  }
});

// Opens the WebGPU device once per test file (lavapipe in CI) and closes it so the worker can exit.
import { afterAll, beforeAll } from 'vitest';
import { initDevice, closeDevice } from '../src/tensor/device.js';

beforeAll(async () => {
  await initDevice();
});
afterAll(() => {
  closeDevice();
});

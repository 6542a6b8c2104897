// Opens the WebGPU device once per test file (lavapipe in CI). It is not closed at the end: vitest
// ends each file's forked worker with SIGTERM, which stops the process without running any native
// teardown, while destroying the device first runs Dawn's and the driver's teardown beside the
// driver's threads, the one place left where a worker was once seen dying of a native crash
// (tests/tensor/device-cycle.test.ts checks closing and reopening).
import { beforeAll } from 'vitest';
import { initDevice } from '../src/tensor/device.js';

beforeAll(async () => {
  await initDevice();
});

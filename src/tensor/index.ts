// The tensor layer's public face: device, tensors, scopes and raw (non-differentiable) ops.
export * from './device.js';
export * from './tensor.js';
export { pool, sizeClass, type PoolStats } from './pool.js';
export { queue } from './queue.js';
export * from './ops/map.js';
export * from './ops/layout.js';
export * from './ops/random.js';
export * from './ops/convert.js';
export * from './random-host.js';
export * from './ops/reduce.js';
export * from './ops/matmul.js';
export * from './ops/conv.js';
export * from './ops/pool.js';
export * from './ops/norm.js';

// `ticketlab/explain`: Grad-CAM / Grad-CAM++, overlays and attention comparisons across pruning levels.
// The engine's declarations name WebGPU types (GPUBuffer, GPUDevice): this keeps them resolvable for users.
/// <reference types="@webgpu/types" preserve="true" />
export * from './gradcam.js';
export * from './compare.js';
export * from './overlay.js';
export * from './images.js';
export * from './run.js';

// `ticketlab/explain`: Grad-CAM / Grad-CAM++, overlays and attention comparisons across pruning levels.
export * from './gradcam.js';
export * from './compare.js';
export * from './overlay.js';
export * from './images.js';
export * from './run.js';

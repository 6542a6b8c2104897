// `ticketlab/data`: datasets (synthetic deepfakes, image folders, OpenForensics, FaceForensics++),
// image codecs and the seeded loader. Host only: nothing here touches the GPU.
export * from './datasets.js';
export * from './image.js';
export * from './loader.js';
export { SyntheticDeepfakes, renderSample, type SyntheticOptions, type SyntheticSample, type SyntheticRgbSample } from './synthetic.js';
export {
  closeShardCaches, fillDecodedCache, isPixelDataset, setCacheDefaults, type CacheDefaults, type FillResult, type PixelDataset,
} from './decoded.js';
export { SHARD_FORMAT_VERSION, ShardCache, type CacheConfig } from './shard-cache.js';
export { setDecodeThreads } from './decode-pool.js';

// One detector training step (forward, BCE-with-logits, backward, Adam) on a fixed synthetic batch
// that stays on the device: the workload the step benchmarks share (the same one `ticketlab profile`
// and the tuner run).
export { syntheticStep as trainStep, type SyntheticStep as TrainStep } from '../src/train/profile.js';

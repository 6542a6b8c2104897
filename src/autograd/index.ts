// The autograd layer's public face: the tape and every differentiable op.
export * from './tape.js';
export * from './functional.js';
export * from './functional-nn.js';

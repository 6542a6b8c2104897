// The command table: each command's name, one-line summary, full help and runner.
import type { Command } from './args.js';
import { infoCommand } from './info.js';
import { evalCommand, trainCommand } from './train.js';
import { impCommand, oneshotCommand, transferCommand } from './imp.js';
import { gradcamCommand } from './gradcam.js';
import { reportCommand } from './report.js';
import { sweepCommand } from './sweep.js';
import { facesCommand } from './faces.js';

export type { Command } from './args.js';

export const commands: Command[] = [infoCommand, trainCommand, evalCommand, impCommand, oneshotCommand, transferCommand, reportCommand, sweepCommand, gradcamCommand, facesCommand];

export function usage(): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return `ticketlab: lottery tickets in deepfake detectors, on hand-written WebGPU kernels

Usage: ticketlab <command> [flags]      ticketlab <command> --help

Commands:
${commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

Environment:
  TICKETLAB_BACKEND   Dawn backend to use (vulkan, metal, d3d12, opengl, ...)
  TICKETLAB_ADAPTER   substring of the adapter name to pick (e.g. llvmpipe, H100)
  TICKETLAB_DEBUG     print stack traces on errors
  TICKETLAB_CONV_IMPL, TICKETLAB_MATMUL, TICKETLAB_REDUCE, TICKETLAB_NORM   force kernel variants (see docs/architecture.md)
`;
}

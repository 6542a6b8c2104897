// The command table: each command's name, one-line summary, full help and runner.
import type { Command } from './args.js';
import { infoCommand } from './info.js';
import { evalCommand, trainCommand } from './train.js';
import { impCommand, oneshotCommand, transferCommand } from './imp.js';
import { gradcamCommand } from './gradcam.js';
import { reportCommand } from './report.js';
import { sweepCommand } from './sweep.js';
import { checkCommand } from './check.js';
import { masksCommand } from './masks.js';
import { tuneCommand } from './tune.js';
import { profileCommand } from './profile.js';
import { facesCommand } from './faces.js';
import { prepareDataCommand } from './cache.js';

export type { Command } from './args.js';

export const commands: Command[] = [infoCommand, trainCommand, evalCommand, impCommand, oneshotCommand, transferCommand, reportCommand, sweepCommand, gradcamCommand, checkCommand, masksCommand, tuneCommand, profileCommand, facesCommand, prepareDataCommand];

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
  TICKETLAB_KERNELS   force kernels, for tests and benches: comma-separated family:variant[:tile],
                      e.g. conv:direct,matmul:shared:128x128,reduce:thread,norm:group,map:capped:64
                      ('conv' = conv.fwd, conv.dgrad, conv.wgrad; 'ticketlab tune --list' lists them)
  TICKETLAB_TUNE      1: use this adapter's tuned kernels (as --tune; fill the cache with 'ticketlab tune')
  XDG_CACHE_HOME      where the tuning cache lives (<dir>/ticketlab/; default ~/.cache/ticketlab/)
  TICKETLAB_DAWN_ENABLE, TICKETLAB_DAWN_DISABLE   extra Dawn toggles (e.g. disable_robustness)
`;
}

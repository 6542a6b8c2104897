// The CLI's wording of library errors: an ArgumentError names a function's argument
// (`createModel: name ...`); on the command line the user typed a flag, so the message names the flag
// that fed that argument (`--model ...`). Arguments no flag feeds keep the library's wording.
import { ArgumentError } from '../util/errors.js';

/** `function.argument` (or `Type.field`) -> the flag whose value it is. */
const FLAG_OF: Record<string, string> = {
  'createModel.name': '--model',
  'parseSchedule.spec': '--schedule',
  'parseGranularity.spec': '--granularity',
  'parseRewind.spec': '--rewind',
  'runImp.config.rewind': '--rewind',
  'fit.settings.epochs': '--epochs',
  'fit.settings.batch': '--batch',
  'fit.settings.lr': '--lr',
  'fit.dir': '--out',
  'writeMaskAnatomy.options.levels': '--levels',
  'writeMaskAnatomy.options.compare': '--compare',
  'pickImages.spec': '--images',
  'checkRun.options.masks': '--masks',
  'explainRun.images': '--images',
};

/** The one line the CLI prints for an error thrown by a command. */
export function cliMessage(e: unknown): string {
  if (e instanceof ArgumentError) {
    const flag = FLAG_OF[`${e.fn}.${e.arg}`];
    if (flag) return `${flag} ${e.problem}`;
  }
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0];
}

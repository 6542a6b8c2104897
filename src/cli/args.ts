// What every command module needs: the Command shape and flag parsing with one-line errors.
// Kept apart from commands.ts (the table of all commands) so command modules never import the table
// that imports them.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export interface Command {
  name: string;
  summary: string;
  help: string;
  run(args: string[]): Promise<number>;
}

/** parseArgs with one-line errors that name the flag. */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, cmd: string) {
  try {
    return parseArgs({ args: joinNegativeValues(args, options), options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0].replace(/^TypeError \[[A-Z_]+\]: /, '').replace(/\. To specify a positional.*$/, '');
    throw new Error(`${cmd}: ${msg}; see 'ticketlab ${cmd} --help'`);
  }
}

// A value that starts with a dash is read by parseArgs as another flag ("argument is ambiguous"), so
// `--seed -1` or `--lr -1e-3` never reached the check that says what is wrong with it. A negative number
// after a flag that takes a value is joined to it (`--lr=-1e-3`): the flag's own check then names it.
const NEGATIVE_NUMBER = /^-(\d|\.\d|inf)/i;

export function joinNegativeValues(args: readonly string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : null;
    const next = args[i + 1];
    if (name !== null && Object.prototype.hasOwnProperty.call(options, name) && options[name].type === 'string' && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

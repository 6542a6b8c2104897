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
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0].replace(/^TypeError \[[A-Z_]+\]: /, '').replace(/\. To specify a positional.*$/, '');
    throw new Error(`${cmd}: ${msg}; see 'ticketlab ${cmd} --help'`);
  }
}

// Errors of the library's API: they name the function and the argument at fault, the way a library
// user wrote the call (`createModel: name 'meso5' is not one of ...`), never a command-line flag.
// The CLI knows which flag feeds which argument and re-words them (cli/errors.ts).

export class ArgumentError extends Error {
  /**
   * @param fn the public function (or `Type.field` for a settings object) whose argument is wrong
   * @param arg the argument or field, as its declaration names it
   * @param problem what is wrong, starting with the offending value: `'meso5' is not one of ...`
   */
  constructor(
    readonly fn: string,
    readonly arg: string,
    readonly problem: string,
  ) {
    super(`${fn}: ${arg} ${problem}`);
    this.name = 'ArgumentError';
  }
}

/** `'a', 'b' or 'c'`: the choices of a string-literal union, for messages. */
export function choices(values: readonly string[]): string {
  const q = values.map((v) => `'${v}'`);
  return q.length > 1 ? `${q.slice(0, -1).join(', ')} or ${q[q.length - 1]}` : q.join('');
}

// The `ticketlab` command: parses flags, dispatches to a subcommand, prints one-line errors.
// No math lives here.
import { commands, usage } from './commands.js';
import { provideFaceCropper } from '../data/datasets.js';
import { sharedDetectorCropper } from '../faces/crop.js';
import { checkKernelFamilies } from '../tensor/kernel-checks.js';
import { cliMessage } from './errors.js';

// FF++ frames and OpenForensics faces are cropped around faces by the detector (data/ cannot build it: it knows no GPU).
provideFaceCropper(sharedDetectorCropper);

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    const c = topic ? commands.find((x) => x.name === topic) : undefined;
    process.stdout.write(c ? c.help : usage());
    return 0;
  }
  if (name === '--version' || name === '-V') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`ticketlab ${pkg.version}\n`);
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`ticketlab: unknown command '${name}'; run 'ticketlab --help' for the list\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.help);
    return 0;
  }
  // Every kernel module is loaded by now (the command table imports them all): an unknown family in
  // TICKETLAB_KERNELS is refused before the command starts, as an unknown variant is.
  checkKernelFamilies();
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Dawn keeps the event loop alive while its objects live; the commands close the device, and this
    // exit makes sure nothing else lingers.
    process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`ticketlab: ${cliMessage(e)}\n`);
    if (process.env.TICKETLAB_DEBUG) console.error(e);
    process.exit(1);
  },
);

/** `vmdedup <command>`: runs one command of lib/cli/commands/ with the signals, the home and the catalog around it. */
import { prepareHome } from '../home';
import { closeCatalog, setIdleConnectionLostListener } from '../catalog/db';
import { isUserError, toAppError } from '../errors';
import { type Context, type Io, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, badInput, oneLine } from './command';
import { USAGE, findCommand } from './commands';
import { writeJson } from './format';

export { EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_NEEDS_CONFIRMATION, EXIT_OK } from './command';

const HELP = [undefined, 'help', '--help', '-h'];

/** Runs one CLI command; returns the exit code. Never throws. */
export async function main(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const controller = new AbortController();
  // An idle connection the server dropped is no problem of its own: the pool reconnects, and a command the loss
  // makes fail says so in its one line.
  setIdleConnectionLostListener(() => undefined);
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (!HELP.includes(argv[0])) {
      for (const notice of await prepareHome()) io.stderr.write(`vmdedup: ${notice}\n`);
    }
    return await dispatch(argv, io, controller.signal);
  } catch (err) {
    if (controller.signal.aborted) {
      io.stderr.write('vmdedup: interrupted; what was already stored is kept, and the next run reuses it\n');
      return EXIT_INTERRUPTED;
    }
    const error = toAppError(err);
    if (error.code === 'INTERNAL' && process.env.VMDEDUP_DEBUG) io.stderr.write(`${(err as Error).stack}\n`);
    io.stderr.write(`vmdedup: ${oneLine(error.userMessage)}\n`);
    return isUserError(error) ? EXIT_BAD_INPUT : EXIT_FAILURE;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await closeCatalog().catch(() => undefined);
  }
}

async function dispatch(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const [name, ...args] = argv;
  const out = (text: string) => io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  const context: Context = { io, signal, out, json: (value) => writeJson(value, (text) => io.stdout.write(text)) };
  if (HELP.includes(name)) {
    out(USAGE);
    return name === undefined ? EXIT_BAD_INPUT : EXIT_OK;
  }
  const command = findCommand(name);
  if (!command) throw badInput(`unknown command '${name}' (see 'vmdedup help')`);
  return command.run(args, context);
}

/** What every CLI command shares: exit codes, its output streams, argument parsing and bad-input errors. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { z } from 'zod';
import { AppError } from '../errors';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_NEEDS_CONFIRMATION = 3;
export const EXIT_INTERRUPTED = 130;

export type Io = { stdout: NodeJS.WritableStream & { isTTY?: boolean }; stderr: NodeJS.WritableStream & { isTTY?: boolean } };

/** node:util parseArgs options: a command's (or a subcommand's) flags. */
export type Flags = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;
export type Parsed = { values: Values; positionals: string[] };

export type Context = {
  io: Io;
  signal: AbortSignal;
  /** Writes text to stdout as (at least) one whole line. */
  out: (text: string) => void;
  /** Writes a value to stdout as indented JSON. */
  json: (value: unknown) => void;
};

/** `vmdedup <name> …`: its lines of the usage text, and how it runs. */
export type Command = {
  name: string;
  /** Its lines of `vmdedup help`, indented as shown there, without a final newline. */
  help: string;
  /** Its flags; a command with subcommands keeps them per subcommand instead. */
  flags?: Flags;
  /** Runs it with the arguments after its name; returns the exit code (bad input throws `badInput`). */
  run: (args: string[], context: Context) => Promise<number>;
};

/** One subcommand of a command (`source add`): its flags, how many positional arguments it takes, what it does. */
export type Subcommand<C extends Context = Context> = {
  /** Absent: its arguments are not read at all (as `db status` and `db stop` have always done). */
  flags?: Flags;
  positionals?: number;
  run: (parsed: Parsed, context: C) => Promise<number>;
};

/**
 * Picks `args[0]` from a command's table of subcommands, parses the rest against its flags and runs it;
 * an unknown or missing subcommand is bad input worded by `unknown` (given the name, '' when missing).
 */
export async function runSubcommand<C extends Context>(
  subcommands: Record<string, Subcommand<C>>, args: string[], context: C, unknown: (sub: string) => string,
): Promise<number> {
  const [sub, ...rest] = args;
  // Own keys only: 'constructor' or '__proto__' is an unknown subcommand, not a property of every object.
  const subcommand = sub !== undefined && Object.hasOwn(subcommands, sub) ? subcommands[sub] : undefined;
  if (!subcommand) throw badInput(unknown(sub ?? ''));
  const parsed = subcommand.flags ? parse(rest, subcommand.flags, subcommand.positionals) : { values: {}, positionals: rest };
  return subcommand.run(parsed, context);
}

/** Strict parseArgs; an unknown flag or a wrong number of positional arguments is a one-line bad-input error. */
export function parse(args: string[], options: ParseArgsConfig['options'], positionalCount = 0): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: positionalCount > 0, strict: true });
  } catch (err) {
    throw badInput((err as Error).message.split('\n')[0]);
  }
  if (parsed.positionals.length !== positionalCount) {
    throw badInput(positionalCount ? `expected ${positionalCount} argument(s), got ${parsed.positionals.length}` : `unexpected argument '${parsed.positionals[0]}'`);
  }
  return parsed;
}

/** Parses with a zod schema; the first problem becomes a one-line bad-input error. */
export function validated<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw badInput(parsed.error.issues.map((issue) => `${issue.path.join('.') || 'input'}: ${issue.message}`).join('; '));
  return parsed.data;
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function badInput(message: string): AppError {
  return new AppError('BAD_INPUT', { message });
}

export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ');
}

import { initRepository } from '../../open-repository';
import { type Command, type Subcommand, EXIT_OK, runSubcommand } from '../command';

const subcommands: Record<string, Subcommand> = {
  init: {
    flags: { replace: { type: 'boolean' }, encrypt: { type: 'boolean' } },
    async run({ values }, { out }) {
      const result = await initRepository({ replace: Boolean(values.replace), encrypt: Boolean(values.encrypt) });
      const kind = result.repo.encrypted ? 'encrypted repository' : 'repository';
      if (!result.created) out(`${result.location} already holds ${kind} ${result.repo.config.id}, the one this catalog indexes`);
      else out(`created ${kind} ${result.repo.config.id} at ${result.location}`);
      if (result.recoveryKey) out(recoveryKeyText(result.recoveryKey));
      if (result.forgotten) out(`the catalog forgot ${result.forgotten.backups} backup images${result.forgotten.previous ? ` of repository ${result.forgotten.previous.repositoryId} (${result.forgotten.previous.location})` : ''}; 'vmdedup catalog rebuild --adopt' with that repository mounted brings them back`);
      return EXIT_OK;
    },
  },
};

/** A recovery key as shown once, with what it is for. */
export function recoveryKeyText(recoveryKey: string): string {
  return `recovery key (shown only now: write it down and keep it apart from the passphrase; it opens the repository if the passphrase is lost):\n\n  ${recoveryKey}\n`;
}

export const repositoryCommand: Command = {
  name: 'repository',
  help: `  repository init [--encrypt] [--replace]                 create the repository (VMDEDUP_REPOSITORY) in an empty folder
                                                          or bucket prefix (s3://bucket/prefix); --encrypt: sealed with
                                                          AES-256-GCM, opened by the passphrase in VMDEDUP_PASSWORD_FILE
                                                          (or VMDEDUP_PASSWORD), and a recovery key printed once;
                                                          --replace: the catalog's repository is lost for good: start anew
                                                          and forget the records of its backups`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'repository' subcommand '${sub}': use 'repository init'`),
};

import { initRepository } from '../../open-repository';
import { type Command, type Subcommand, EXIT_OK, runSubcommand } from '../command';

const subcommands: Record<string, Subcommand> = {
  init: {
    flags: { replace: { type: 'boolean' } },
    async run({ values }, { out }) {
      const result = await initRepository({ replace: Boolean(values.replace) });
      if (!result.created) out(`${result.location} already holds repository ${result.repo.config.id}, the one this catalog indexes`);
      else out(`created repository ${result.repo.config.id} at ${result.location}`);
      if (result.forgotten) out(`the catalog forgot ${result.forgotten.backups} backup images${result.forgotten.previous ? ` of repository ${result.forgotten.previous.repositoryId} (${result.forgotten.previous.location})` : ''}; 'vmdedup catalog rebuild --adopt' with that repository mounted brings them back`);
      return EXIT_OK;
    },
  },
};

export const repositoryCommand: Command = {
  name: 'repository',
  help: `  repository init [--replace]                             create the repository (VMDEDUP_REPOSITORY) in an empty folder
                                                          or bucket prefix (s3://bucket/prefix);
                                                          --replace: the catalog's repository is lost for good: start anew
                                                          and forget the records of its backups`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'repository' subcommand '${sub}': use 'repository init'`),
};

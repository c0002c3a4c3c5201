import { rebuildCatalog } from '../../services/backups/rebuild-catalog';
import { getCatalogSql } from '../../catalog/db';
import { openRepositoryFolder } from '../../open-repository';
import { type Command, type Subcommand, EXIT_FAILURE, EXIT_OK, oneLine, runSubcommand } from '../command';

const subcommands: Record<string, Subcommand> = {
  rebuild: {
    flags: { adopt: { type: 'boolean' } },
    async run({ values }, { io, signal, out }) {
      const { repo, location } = await openRepositoryFolder();
      const result = await rebuildCatalog(await getCatalogSql(), {
        repo, location, adopt: Boolean(values.adopt), signal,
        onSkipped: ({ id, error }) => io.stderr.write(`vmdedup: backup image ${id} skipped: ${oneLine(error)}\n`),
      });
      out(`catalog rebuilt from ${location}: ${result.backupImages} backup images, ${result.sources} sources${result.skipped.length ? `; ${result.skipped.length} unreadable images skipped` : ''}`);
      return result.skipped.length ? EXIT_FAILURE : EXIT_OK;
    },
  },
};

export const catalogCommand: Command = {
  name: 'catalog',
  help: `  catalog rebuild [--adopt]                               recreate the catalog from the repository alone (in one transaction;
                                                          --adopt: index this repository even if the catalog indexed another)`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'catalog' subcommand '${sub}': use 'catalog rebuild'`),
};

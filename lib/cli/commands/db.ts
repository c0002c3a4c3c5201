import { embeddedCatalogStatus, stopEmbeddedCatalog } from '../../catalog/embedded-postgres';
import { vmdedupHome } from '../../config';
import { appCatalogUrl, catalogUrl } from '../../catalog/db';
import { type Command, type Subcommand, EXIT_OK, badInput, runSubcommand } from '../command';

const subcommands: Record<string, Subcommand> = {
  url: {
    flags: { app: { type: 'boolean' } },
    async run({ values }, { out }) {
      out(values.app ? await appCatalogUrl() : await catalogUrl());
      return EXIT_OK;
    },
  },
  stop: {
    async run(_parsed, { out }) {
      out((await stopEmbeddedCatalog(vmdedupHome())) ? 'embedded catalog stopped' : 'embedded catalog is not running');
      return EXIT_OK;
    },
  },
  status: {
    async run(_parsed, { out }) {
      const status = await embeddedCatalogStatus(vmdedupHome());
      out(status.initialised ? `embedded catalog in ${vmdedupHome()}: ${status.running ? `running on 127.0.0.1:${status.port}` : 'stopped'}` : `no embedded catalog in ${vmdedupHome()} yet`);
      return EXIT_OK;
    },
  },
};

export const dbCommand: Command = {
  name: 'db',
  help: `  db status | db stop                                     the embedded catalog database
  db url [--app]                                          the catalog's admin connection URL (with its password: for psql);
                                                          --app: the app role's, for VMDEDUP_APP_DATABASE_URL`,
  run: async (args, context) => {
    // Every subcommand but url is about the embedded catalog (an unknown one too: this is said first).
    if (args[0] !== 'url' && process.env.DATABASE_URL) throw badInput('DATABASE_URL is set: the catalog is an external PostgreSQL, not the embedded one');
    return runSubcommand(subcommands, args, context, (sub) => `unknown 'db' subcommand '${sub}': use 'db status', 'db stop' or 'db url'`);
  },
};

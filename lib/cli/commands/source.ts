import { addSource } from '../../services/sources/add-source';
import { listSources } from '../../services/sources/list-sources';
import { getCatalogSql } from '../../catalog/db';
import { type Command, type Subcommand, EXIT_OK, badInput, runSubcommand } from '../command';
import { table } from '../format';

const subcommands: Record<string, Subcommand> = {
  add: {
    flags: { type: { type: 'string' }, path: { type: 'string' } },
    positionals: 1,
    async run({ values, positionals }, { out }) {
      if (!values.type || !values.path) throw badInput('source add needs --type libvirt|vmware and --path <dir>');
      const source = await addSource(await getCatalogSql(), { name: positionals[0], type: values.type as string, path: values.path as string });
      out(`added source ${source.name} (${source.type}, ${source.path})`);
      return EXIT_OK;
    },
  },
  list: {
    flags: { json: { type: 'boolean' } },
    async run({ values }, { out, json }) {
      const sources = await listSources(await getCatalogSql());
      if (values.json) json({ sources: sources.map(({ name, type, path: dir }) => ({ name, type, path: dir })) });
      else out(sources.length ? table([['NAME', 'TYPE', 'PATH'], ...sources.map((s) => [s.name, s.type, s.path])]) : 'no sources (add one with: vmdedup source add <name> --type libvirt|vmware --path <dir>)');
      return EXIT_OK;
    },
  },
};

export const sourceCommand: Command = {
  name: 'source',
  help: `  source add <name> --type libvirt|vmware --path <dir>   register a source of VMs
  source list [--json]                                    list sources`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'source' subcommand '${sub}': use 'source add' or 'source list'`),
};

import { addSource } from '../../services/sources/add-source';
import { listSources } from '../../services/sources/list-sources';
import { updateSource } from '../../services/sources/update-source';
import { getCatalogSql } from '../../catalog/db';
import { type Command, type Subcommand, EXIT_OK, badInput, runSubcommand } from '../command';
import { table } from '../format';

const subcommands: Record<string, Subcommand> = {
  add: {
    flags: { type: { type: 'string' }, path: { type: 'string' }, storage: { type: 'string', multiple: true }, uri: { type: 'string' } },
    positionals: 1,
    async run({ values, positionals }, { out }) {
      if (!values.type || (!values.path && !values.uri)) throw badInput('source add needs --type libvirt|vmware and --path <dir> (or, for a libvirt host, --uri qemu:///system)');
      const source = await addSource(await getCatalogSql(), {
        name: positionals[0], type: values.type as string, path: values.path as string | undefined, storage: values.storage as string[] | undefined, uri: values.uri as string | undefined,
      });
      out(`added source ${source.name} (${describe(source)})`);
      return EXIT_OK;
    },
  },
  edit: {
    flags: { path: { type: 'string' }, storage: { type: 'string', multiple: true }, 'no-storage': { type: 'boolean' } },
    positionals: 1,
    async run({ values, positionals }, { out }) {
      const sql = await getCatalogSql();
      const source = (await listSources(sql)).find((s) => s.name === positionals[0]);
      if (!source) throw badInput(`no source named '${positionals[0]}' (see 'vmdedup source list')`);
      if (values.storage && values['no-storage']) throw badInput('give --storage <dir> or --no-storage, not both');
      const storage = values['no-storage'] ? [] : (values.storage as string[] | undefined) ?? source.storage;
      const updated = await updateSource(sql, { id: source.id, name: source.name, type: source.type, path: (values.path as string | undefined) ?? source.path, storage, uri: source.uri ?? null });
      out(`source ${updated.name} now: ${describe(updated)}`);
      return EXIT_OK;
    },
  },
  list: {
    flags: { json: { type: 'boolean' } },
    async run({ values }, { out, json }) {
      const sources = await listSources(await getCatalogSql());
      if (values.json) json({ sources: sources.map(({ name, type, path: dir, storage, uri }) => ({ name, type, path: dir, storage, ...(uri ? { uri } : {}) })) });
      else out(sources.length ? table([['NAME', 'TYPE', 'PATH', 'STORAGE'], ...sources.map((s) => [s.name, s.type, s.uri ? `${s.uri} (${s.path})` : s.path, s.storage.join(', ') || '-'])]) : 'no sources (add one with: vmdedup source add <name> --type libvirt|vmware --path <dir>)');
      return EXIT_OK;
    },
  },
};

export const sourceCommand: Command = {
  name: 'source',
  help: `  source add <name> --type libvirt|vmware --path <dir> [--storage <dir>]...
                                                          register a source of VMs: its configs are in --path, its
                                                          disks there or in a --storage folder (nothing else is read)
  source add <name> --type libvirt --uri qemu:///system [--storage <dir>]...
                                                          a libvirt host, read through libvirt: running domains are
                                                          backed up at one point in time (disks in its storage pools)
  source edit <name> [--path <dir>] [--storage <dir>]... [--no-storage]
                                                          point a source at another folder, or replace its storage folders
  source list [--json]                                    list sources`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'source' subcommand '${sub}': use 'source add', 'source edit' or 'source list'`),
};

function describe(source: { type: string; path: string; storage: string[]; uri?: string | null }): string {
  return `${source.type}, ${source.uri ? `connection ${source.uri}` : source.path}${source.storage.length ? `; disks also in ${source.storage.join(', ')}` : ''}`;
}

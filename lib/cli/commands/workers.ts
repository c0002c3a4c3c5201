/** `vmdedup workers`: the job workers the catalog knows, what each serves, and whether it is alive. */
import { getCatalog } from '../../catalog/db';
import { listWorkers } from '../../services/jobs/workers';
import { type Command, type Flags, EXIT_OK, parse } from '../command';
import { table } from '../format';

const flags: Flags = { json: { type: 'boolean' } };

export const workersCommand: Command = {
  name: 'workers',
  help: '  workers [--json]                                        the job workers: their host, sources, last sign of life',
  flags,
  async run(args, { out, json }) {
    const { values } = parse(args, flags);
    const workers = await listWorkers(await getCatalog());
    if (values.json) json({ workers });
    else if (workers.length === 0) out("no job worker is running (start one with 'npm run worker', or 'npm run worker -- --sources <name>,…' on each host)");
    else out(table([
      ['NAME', 'HOST', 'SERVES', 'SOURCES', 'LAST SEEN', 'STATE'],
      ...workers.map((w) => [w.name, w.host, w.lanes === 'all' ? 'jobs, calls' : w.lanes, w.sources ? w.sources.join(', ') : 'every source', w.seenAt, w.alive ? 'alive' : 'not heard from (stopped?)']),
    ]));
    return EXIT_OK;
  },
};

import { listCommonDisks } from '../../services/reports/list-common-disks';
import { getCatalog } from '../../catalog/db';
import { formatBytes } from '../../format';
import { type Command, type Flags, EXIT_OK, parse } from '../command';
import { table } from '../format';

const flags: Flags = { json: { type: 'boolean' } };

export const commonDisksCommand: Command = {
  name: 'common-disks',
  help: '  common-disks [--json]                                   disks shared by several VMs, and what they cost',
  flags,
  async run(args, { out, json }) {
    const { values } = parse(args, flags);
    const commonDisks = await listCommonDisks(await getCatalog());
    if (values.json) json({ commonDisks });
    else out(commonDisks.length ? table([['DISK', 'VMS', 'LOGICAL', 'STORED', 'COPIES'], ...commonDisks.map((d) => [d.path, d.vms.join(','), formatBytes(d.logicalBytes), formatBytes(d.storedBytes), String(d.copiesStored)])]) : 'no common disks');
    return EXIT_OK;
  },
};

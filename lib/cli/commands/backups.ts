import { listBackups } from '../../services/reports/list-backups';
import { getCatalog } from '../../catalog/db';
import { formatBytes } from '../../format';
import { type Command, type Flags, EXIT_OK, parse } from '../command';
import { table } from '../format';

const flags: Flags = { vm: { type: 'string' }, json: { type: 'boolean' } };

export const backupsCommand: Command = {
  name: 'backups',
  help: '  backups [--vm <name>] [--json]                          list backup images',
  flags,
  async run(args, { out, json }) {
    const { values } = parse(args, flags);
    const backups = await listBackups(await getCatalog(), { vm: values.vm as string | undefined });
    if (values.json) json({ backups });
    else out(backups.length ? table([['BACKUP', 'VM', 'SOURCE', 'CREATED', 'DISKS', 'LOGICAL', 'WRITTEN'], ...backups.map((b) => [b.backupId, b.vm, b.source, b.createdAt, String(b.disks.length), formatBytes(b.logicalBytes), formatBytes(b.bytesWritten)])]) : 'no backups');
    return EXIT_OK;
  },
};

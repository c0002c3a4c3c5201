import { listBackups } from '../../services/reports/list-backups';
import { getCatalog, getCatalogSql } from '../../catalog/db';
import { setBackupProtected } from '../../services/backups/protect-backup';
import { openRepository } from '../../open-repository';
import { formatBytes } from '../../format';
import { type Command, type Flags, EXIT_OK, parse } from '../command';
import { table } from '../format';

const flags: Flags = { vm: { type: 'string' }, json: { type: 'boolean' } };

export const backupsCommand: Command = {
  name: 'backups',
  help: `  backups [--vm <name>] [--json]                          list backup images
  backups protect|unprotect <backup id>                   keep a backup whatever prune's rules say (or no longer)`,
  flags,
  async run(args, { out, json }) {
    if (args[0] === 'protect' || args[0] === 'unprotect') {
      const { positionals: [id] } = parse(args.slice(1), {}, 1);
      await setBackupProtected(await getCatalogSql(), await openRepository({ mustExist: true }), id, args[0] === 'protect');
      out(`${id}: ${args[0] === 'protect' ? 'protected: prune keeps it' : 'no longer protected'}`);
      return EXIT_OK;
    }
    const { values } = parse(args, flags);
    const backups = await listBackups(await getCatalog(), { vm: values.vm as string | undefined });
    if (values.json) json({ backups });
    else out(backups.length ? table([['BACKUP', 'VM', 'SOURCE', 'CREATED', 'DISKS', 'LOGICAL', 'WRITTEN', ''], ...backups.map((b) => [b.backupId, b.vm, b.source, b.createdAt, String(b.disks.length), formatBytes(b.logicalBytes), formatBytes(b.bytesWritten), b.protected ? 'protected' : ''])]) : 'no backups');
    return EXIT_OK;
  },
};

import { reconcileCatalog } from '../../services/backups/reconcile-catalog';
import { getStats } from '../../services/reports/get-stats';
import { getCatalogSql } from '../../catalog/db';
import { formatBytes } from '../../format';
import { openRepositoryIfAny } from '../../open-repository';
import { type Command, type Flags, EXIT_OK, parse } from '../command';
import { table } from '../format';

const flags: Flags = { json: { type: 'boolean' } };

export const statsCommand: Command = {
  name: 'stats',
  help: '  stats [--json]                                          catalog totals and savings',
  flags,
  async run(args, { io, signal, out, json }) {
    const { values } = parse(args, flags);
    const sql = await getCatalogSql();
    // Stats count what the repository holds: a record a crash lost is put back first.
    const repo = await openRepositoryIfAny({ sql });
    if (repo) await reconcileCatalog(sql, { repo, signal, onWarning: (message) => io.stderr.write(`warning: ${message}\n`) });
    const stats = await getStats(sql);
    if (values.json) json(stats);
    else out(table([
      ['sources', String(stats.sources)], ['VMs (protected)', `${stats.vms} (${stats.vmsProtected})`], ['backup images', String(stats.backups)],
      ['disks (common)', `${stats.disks} (${stats.commonDisks})`], ['logical bytes', formatBytes(stats.logicalBytes)],
      ['stored bytes', formatBytes(stats.storedBytes)], ['dedup ratio', `${stats.dedupRatio}x`],
      ['saved by common disks (sharing between VMs)', formatBytes(stats.savedByCommonDisks)],
      ['saved by incremental reuse', formatBytes(stats.savedByReuse)],
    ]));
    return EXIT_OK;
  },
};

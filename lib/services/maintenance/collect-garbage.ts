import { type CatalogSql, catalogCall } from '../../catalog/db';
import { acquireGcLease, recordGcRun } from '../../catalog/gc-coordination';
import { type GcProgress, type GcReport, collectGarbage } from '../../engine/gc/collect';
import type { Repository } from '../../engine/repository/repository';
import { AppError } from '../../errors';

export type RunGcOptions = {
  repo: Repository;
  dryRun?: boolean;
  /** How long to wait for backups running since before the collection (see collectGarbage). */
  waitMs?: number;
  /** How often the wait looks again (tests wait less). */
  pollMs?: number;
  onProgress?: (progress: GcProgress) => void;
  signal?: AbortSignal;
};

/** One garbage collection, alone (a second one at the same time is refused), safe while backups run. */
export async function runGarbageCollection(sql: CatalogSql, options: RunGcOptions): Promise<GcReport> {
  const lease = await catalogCall(() => acquireGcLease(sql));
  if (!lease) throw new AppError('CONFLICT', { message: 'another garbage collection is running; try again when it has finished' });
  try {
    const report = await collectGarbage({ ...options, coordinator: lease });
    if (!options.dryRun) await catalogCall(() => recordGcRun(sql, report));
    return report;
  } finally {
    await lease.release().catch(() => undefined);
  }
}

import { type CatalogSql, catalogCall } from '../../catalog/db';
import { listVerifiableImages, recordVerifyResults } from '../../catalog/verify-results';
import type { Repository } from '../../engine/repository/repository';
import { type VerifyProgress, type VerifyReport, verifyImages } from '../../engine/verify/verify';
import { AppError } from '../../errors';
import { reconcileCatalog } from '../backups/reconcile-catalog';
import { globMatcher } from '../backups/run-backup';

export type VerifyBackupsOptions = {
  repo: Repository;
  vms?: string[];
  /** Or by name pattern (a scheduled verify's), and of one source. */
  vmPatterns?: string[];
  source?: string;
  /** Only images not verified within this many days (never verified ones included). */
  outdatedAfterDays?: number;
  now?: Date;
  onProgress?: (progress: VerifyProgress) => void;
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
};

/** Verifies the chosen backup images and records the result of each in the catalog. */
export async function verifyBackups(sql: CatalogSql, options: VerifyBackupsOptions): Promise<VerifyReport> {
  const { repo } = options;
  const now = options.now ?? new Date();
  await catalogCall(() => reconcileCatalog(sql, { repo, signal: options.signal, onWarning: options.onWarning }));
  const outdatedBefore = options.outdatedAfterDays === undefined ? undefined : new Date(now.getTime() - options.outdatedAfterDays * 86_400_000);
  const matchers = options.vmPatterns?.map(globMatcher);
  const images = (await catalogCall(() => listVerifiableImages(sql, { vms: options.vms, outdatedBefore })))
    .filter((image) => (!options.source || image.source === options.source) && (!matchers || matchers.some((m) => m(image.vm))));
  for (const name of options.vms ?? []) {
    if (!images.some((image) => image.vm === name) && outdatedBefore === undefined) throw new AppError('BAD_INPUT', { message: `no backups of a VM named '${name}' (see 'vmdedup backups')` });
  }
  const report = await verifyImages({ repo, images, onProgress: options.onProgress, signal: options.signal });
  await catalogCall(() => recordVerifyResults(sql, report.images, report.damagedDisks, now));
  return report;
}

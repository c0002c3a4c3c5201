import { type CatalogSql, catalogCall } from '../../catalog/db';
import { listVerifiableImages, recordDamage, recordVerifyResults, vmExists } from '../../catalog/verify-results';
import type { Repository } from '../../engine/repository/repository';
import { type VerifiedImage, type VerifyProgress, type VerifyReport, verifyImages } from '../../engine/verify/verify';

const RECORD_BATCH = 32;
const OUTDATED_SLACK_MS = 12 * 3_600_000;
import { AppError } from '../../errors';
import { reconcileCatalog } from '../backups/reconcile-catalog';
import { globMatcher } from '../../glob';

export type VerifyBackupsOptions = {
  repo: Repository;
  vms?: string[];
  /** Or by name pattern (a scheduled verify's), and of one source. */
  vmPatterns?: string[];
  source?: string;
  /** Only images not verified within this many days (never verified ones included). */
  outdatedAfterDays?: number;
  /** I/O budget: bytes of chunks one run reads at most (images waiting longest first), and a cap on the read rate. */
  budgetBytes?: number;
  maxBytesPerSecond?: number;
  now?: Date;
  onProgress?: (progress: VerifyProgress) => void;
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
};

/**
 * overdue: with outdatedAfterDays, the images this run left unverified (its budget was spent) that have waited longer
 * than that: the coverage guarantee (each image, hence each chunk, re-read within N days) is not met; a larger budget
 * or more frequent runs are needed.
 */
export type VerifyBackupsReport = VerifyReport & { overdue: number };

/** Verifies the chosen backup images and records the result of each in the catalog. */
export async function verifyBackups(sql: CatalogSql, options: VerifyBackupsOptions): Promise<VerifyBackupsReport> {
  const { repo } = options;
  const now = options.now ?? new Date();
  await catalogCall(() => reconcileCatalog(sql, { repo, signal: options.signal, onWarning: options.onWarning }));
  // Half a day of slack: a daily job whose run starts a little earlier than last week's (a tick, a busy worker), or a
  // week with a daylight-saving change (167 h), still re-reads what it verified 7 days ago.
  const outdatedBefore = options.outdatedAfterDays === undefined ? undefined : new Date(now.getTime() - options.outdatedAfterDays * 86_400_000 + OUTDATED_SLACK_MS);
  const matchers = options.vmPatterns?.map(globMatcher);
  const images = (await catalogCall(() => listVerifiableImages(sql, { vms: options.vms, outdatedBefore })))
    .filter((image) => (!options.source || image.source === options.source) && (!matchers || matchers.some((m) => m(image.vm))));
  for (const name of options.vms ?? []) {
    const known = images.some((image) => image.vm === name) || (outdatedBefore !== undefined && (await catalogCall(() => vmExists(sql, name))));
    if (!known) throw new AppError('BAD_INPUT', { message: `no backups of a VM named '${name}' (see 'vmdedup backups')` });
  }
  // Recorded as the run goes, a batch at a time: a run stopped part-way (Ctrl-C, a job's time limit) keeps what it did.
  let batch: VerifiedImage[] = [];
  const flush = async () => {
    const done = batch;
    batch = [];
    if (done.length) await catalogCall(() => recordVerifyResults(sql, done, [], now));
  };
  let report: VerifyReport;
  try {
    report = await verifyImages({
      repo, images, onProgress: options.onProgress, signal: options.signal, budgetBytes: options.budgetBytes, maxBytesPerSecond: options.maxBytesPerSecond,
      onDamaged: ({ digest, keys }) => catalogCall(() => recordDamage(sql, digest, keys)),
      onImage: async (image) => {
        batch.push(image);
        if (batch.length >= RECORD_BATCH) await flush();
      },
    });
  } finally {
    await flush();
  }
  const lapsedBefore = options.outdatedAfterDays === undefined ? undefined : now.getTime() - options.outdatedAfterDays * 86_400_000;
  const overdue = lapsedBefore === undefined ? 0 : images.slice(images.length - report.deferred).filter((image) => image.due.getTime() < lapsedBefore).length;
  return { ...report, overdue };
}

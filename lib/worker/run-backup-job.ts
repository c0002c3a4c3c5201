import { recordAudit } from '../catalog/audit';
import { jobStaleSeconds } from '../config';
import type { JobState, JobTarget } from '../catalog/jobs';
import { runBackup } from '../catalog/run-backup';
import { type Catalog, getCatalogSql } from '../db';
import { toAppError } from '../errors';
import type { Repository } from '../engine/repository/repository';

/** Progress is written at most this often; a silent phase (scanning) still beats the heartbeat (well inside the stale limit). */
const PROGRESS_EVERY_MS = 500;

/**
 * Runs one queued backup job: marks it running, persists progress (bytes, rate, the VM and disk at work)
 * and a heartbeat, then the result. A job that is not queued any more (failed as stale, say) is skipped.
 */
export async function runBackupJob(db: Catalog, options: { jobId: string; repo: Repository; signal?: AbortSignal }): Promise<JobState | undefined> {
  const { jobId } = options;
  const claimed = await db.job.updateMany({ where: { id: jobId, state: 'queued' }, data: { state: 'running', startedAt: new Date(), heartbeatAt: new Date() } });
  if (claimed.count === 0) return undefined;
  const job = await db.job.findUniqueOrThrow({ where: { id: jobId } });
  const target = job.target as JobTarget;

  let lastWrite = 0;
  let writing: Promise<unknown> = Promise.resolve();
  const beat = setInterval(() => {
    writing = writing.then(() => db.job.update({ where: { id: jobId }, data: { heartbeatAt: new Date() } })).catch(() => undefined);
  }, Math.min(10_000, (jobStaleSeconds() * 1000) / 4));
  try {
    const report = await runBackup(await getCatalogSql(), {
      repo: options.repo, source: target.source, vms: target.vm ? [target.vm] : undefined, signal: options.signal,
      onProgress: (progress) => {
        const now = Date.now();
        if (now - lastWrite < PROGRESS_EVERY_MS) return;
        lastWrite = now;
        // One write at a time, the latest figures win; progress never holds up the backup.
        writing = writing.then(() => db.job.update({
          where: { id: jobId },
          data: {
            bytesDone: BigInt(progress.bytesDone), bytesTotal: BigInt(progress.bytesTotal), bytesPerSecond: progress.bytesPerSecond,
            message: [progress.vm, progress.disk].filter(Boolean).join(': '), heartbeatAt: new Date(),
          },
        })).catch(() => undefined);
      },
    });
    await writing;
    const state: JobState = report.failures.length === 0 ? 'succeeded' : report.backups.length > 0 ? 'partial' : 'failed';
    const message = `${report.backups.length} VM${report.backups.length === 1 ? '' : 's'} backed up${report.failures.length ? `, ${report.failures.length} failed` : ''}`;
    const result = {
      backups: report.backups.map((b) => ({ vm: b.vm, source: b.source, backupId: b.backupId })),
      failures: report.failures, totals: report.totals, warnings: report.warnings,
    };
    const current = await db.job.findUniqueOrThrow({ where: { id: jobId }, select: { bytesTotal: true } });
    await db.job.update({
      where: { id: jobId },
      // The bar ends full: what the run had to do, it did (the fast path reads nothing).
      data: {
        state, finishedAt: new Date(), message, result, bytesDone: current.bytesTotal,
        error: report.failures.length ? report.failures.map((f) => `${f.vm}: ${f.error}`).join('; ') : null,
      },
    });
    await recordAudit(db, { actor: 'worker', action: 'backup.finished', target: job.label, detail: { jobId, state, ...report.totals, failures: report.failures.length } });
    return state;
  } catch (err) {
    await writing;
    const error = options.signal?.aborted ? 'stopped: the worker was shut down; run it again (what was stored is reused)' : toAppError(err).userMessage;
    await db.job.update({ where: { id: jobId }, data: { state: 'failed', finishedAt: new Date(), error } });
    await recordAudit(db, { actor: 'worker', action: 'backup.finished', target: job.label, detail: { jobId, state: 'failed', error } });
    return 'failed';
  } finally {
    clearInterval(beat);
  }
}

import { recordAudit } from '../../catalog/audit';
import { sendAlert } from '../alerts/alerts';
import type { JobKind, JobState, JobTarget } from './job-view';
import { reconcileCatalog } from '../backups/reconcile-catalog';
import { recordInventory } from '../../catalog/record-inventory';
import { runRestoreRequest } from '../restores/run-restore-request';
import { type BackupReport, type RunBackupOptions, runBackup } from '../backups/run-backup';
import { runGarbageCollection } from '../maintenance/collect-garbage';
import { verifyBackups } from '../maintenance/verify-backups';
import { pruneBackups } from '../maintenance/prune-backups';
import type { GcProgress } from '../../engine/gc/collect';
import { formatBytes } from '../../format';
import { type ScheduledJobRun, TimeLimitError, runScheduledJob } from './run-scheduled-job';
import { retryAfter } from './scheduled-jobs';
import { selectSources } from '../sources/select-sources';
import { jobStaleSeconds } from '../../config';
import { type Catalog, getCatalogSql } from '../../catalog/db';
import { scanSource } from '../../engine/sources/inventory';
import { scanWithMemo } from '../sources/scan-with-memo';
import { AppError, isUserError, toAppError } from '../../errors';
import { openRepository, openRepositoryIfAny } from '../../open-repository';
import { type Lane, parseLane } from '../../jobs/queue';

/** Progress is written at most this often; a silent phase (scanning) still beats the heartbeat (well inside the stale limit). */
const PROGRESS_EVERY_MS = 500;

type Progress = { bytesDone: number; bytesTotal: number; bytesPerSecond: number; message: string };
/** retry: a failed scheduled run worth trying again (what went wrong may pass), and for a backup the VMs to try. */
type Outcome = { state: JobState; message: string; result: object; error?: string; retry?: { onlyVms?: { source: string; vm: string }[] } };
/** `lane`: which workers may run it (lib/jobs/queue.ts); a job in one source's lane reads that source only. */
type JobWork = (context: { db: Catalog; target: JobTarget; lane: Lane; scheduledJobId?: string; signal?: AbortSignal; report: (progress: Progress) => void }) => Promise<Outcome>;

/** Each job opens the repository (checked against the catalog) itself: an unmounted backup disk fails that
 *  job with a line naming the folder, and the worker serves the next one once the disk is back. */
const WORK: Record<JobKind, JobWork> = {
  async backup({ db, target, lane, scheduledJobId, signal, report }) {
    const onProgress: RunBackupOptions['onProgress'] = (p) => report({
      bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, bytesPerSecond: p.bytesPerSecond,
      message: [`${p.vmsDone}/${p.vmsTotal} VMs`, p.vm, p.disk].filter(Boolean).join(': '),
    });
    const sql = await getCatalogSql();
    let pruned: (ScheduledJobRun & { kind: 'backup' }) | undefined;
    let result: BackupReport;
    if (target.scheduledJob) {
      const run = await runScheduledJob(db, sql, { name: target.scheduledJob, id: scheduledJobId, kind: 'backup', repo: await openRepository(), signal, onProgress, onlyVms: target.onlyVms });
      pruned = run;
      result = run.backup;
    } else {
      // Never more than the lane's source: this worker may reach no other (a VM named without its source is of one).
      const source = target.source ?? (lane.kind === 'source' ? lane.source : undefined);
      result = await runBackup(sql, { repo: await openRepository(), source, vms: target.vm ? [target.vm] : undefined, signal, onProgress });
    }
    const { backups, failures, problems } = result;
    const lines = [...problems.map((p) => `source '${p.source}': ${p.message}`), ...failures.map((f) => `${f.vm}: ${f.error}`), ...(pruned?.pruneError ? [`retention: ${pruned.pruneError}`] : [])];
    return {
      state: lines.length === 0 ? 'succeeded' : backups.length > 0 ? 'partial' : 'failed',
      message: `${backups.length} VM${backups.length === 1 ? '' : 's'} backed up${failures.length ? `, ${failures.length} failed` : ''}${problems.length ? `, ${problems.length} source problems` : ''}`,
      result: {
        backups: backups.map((b) => ({ vm: b.vm, source: b.source, backupId: b.backupId })), failures, problems, totals: result.totals, warnings: result.warnings,
        ...(pruned?.prune ? { pruned: { removed: pruned.prune.removed, freedBytes: pruned.prune.freedBytes } } : {}),
        ...(pruned?.pruneError ? { pruneError: pruned.pruneError } : {}),
      },
      // The VMs a stopped run did not reach are counted, not listed (the result has each).
      error: lines.length ? [
        ...problems.map((p) => `source '${p.source}': ${p.message}`),
        ...failures.filter((f) => f.attempted).map((f) => `${f.vm}: ${f.error}`),
        ...(result.stopped ? [`the run stopped ${result.stopped.vm ? `at ${result.stopped.vm}` : `(${result.stopped.error})`}: ${failures.filter((f) => !f.attempted).length} VMs not backed up`] : []),
        ...(pruned?.pruneError ? [`retention not applied: ${pruned.pruneError}`] : []),
      ].join('; ') : undefined,
      // A source that could not be read is tried again whole; else only the VMs that failed (retention is not: it
      // runs again after the next backup).
      retry: problems.length ? {} : failures.length ? { onlyVms: failures.map((f) => ({ source: f.source, vm: f.vm })) } : undefined,
    };
  },
  async gc({ db, target, scheduledJobId, signal, report }) {
    const sql = await getCatalogSql();
    const repo = await openRepository({ mustExist: true });
    const onProgress = (p: GcProgress) => report({ bytesDone: p.done ?? 0, bytesTotal: p.total ?? 0, bytesPerSecond: 0, message: p.message });
    const gc = target.scheduledJob
      ? (await runScheduledJob(db, sql, { name: target.scheduledJob, id: scheduledJobId, kind: 'gc', repo, signal })).gc
      : await runGarbageCollection(sql, { repo, signal, onProgress });
    return {
      state: gc.pendingBytes > 0 ? 'partial' : 'succeeded',
      message: `removed ${gc.removedChunks} chunks and ${gc.removedDisks} stored disks (${formatBytes(gc.freedBytes)})${gc.pendingBytes ? `; ${formatBytes(gc.pendingBytes)} pending` : ''}`,
      result: gc, error: gc.pendingReason,
    };
  },
  async verify({ db, target, scheduledJobId, signal, report }) {
    const sql = await getCatalogSql();
    const repo = await openRepository({ mustExist: true });
    const run = target.scheduledJob
      ? await runScheduledJob(db, sql, { name: target.scheduledJob, id: scheduledJobId, kind: 'verify', repo, signal })
      : { verify: await verifyBackups(sql, { repo, signal, onProgress: (p) => report({ bytesDone: p.imagesDone, bytesTotal: p.imagesTotal, bytesPerSecond: 0, message: `${p.checkedChunks} chunks checked` }) }), drills: [] };
    const { verify, drills } = run;
    const failed = verify.images.filter((image) => image.status === 'failed');
    const failedDrills = drills.filter((d) => d.status === 'failed');
    const errors = [
      ...failed.slice(0, 5).map((image) => `${image.vm} ${image.backupId}: ${image.problems.join('; ')}`),
      ...failedDrills.map((d) => `restore drill of ${d.vm} ${d.backupId}: ${d.problems.join('; ')}`),
      ...(verify.overdue ? [`coverage: ${verify.overdue} backups not verified within the job's --outdated-after: its budget is spent before it reaches them (raise --budget or run it more often)`] : []),
    ];
    return {
      state: failed.length || failedDrills.length ? 'failed' : verify.overdue ? 'partial' : 'succeeded',
      message: `${verify.images.length} backups verified, ${failed.length} failed; ${verify.checkedChunks} chunks checked, ${verify.damaged.length} damaged`
        + (verify.deferred ? `; ${verify.deferred} left for the next run (budget)` : '') + (drills.length ? `; ${drills.length} restore drills, ${failedDrills.length} failed` : ''),
      result: { checkedChunks: verify.checkedChunks, bytesRead: verify.bytesRead, damaged: verify.damaged, images: verify.images, deferred: verify.deferred, overdue: verify.overdue, drills },
      error: errors.length ? errors.join('; ') : undefined,
    };
  },
  async sync({ db, target, scheduledJobId, signal, report }) {
    if (!target.scheduledJob) throw new AppError('BAD_INPUT', { message: 'a sync run belongs to a sync job' });
    const sql = await getCatalogSql();
    const repo = await openRepository({ mustExist: true });
    report({ bytesDone: 0, bytesTotal: 0, bytesPerSecond: 0, message: 'copying the backups the copy lacks' });
    const { sync } = await runScheduledJob(db, sql, { name: target.scheduledJob, id: scheduledJobId, kind: 'sync', repo, signal });
    const { report: copied, target: copy } = sync;
    const failed = copied.images.failed;
    return {
      state: failed.length ? 'failed' : 'succeeded',
      message: `copied ${copied.images.copied} backups to ${copy.location} (${copied.images.alreadyCopied} were there); ${copied.chunks.copied} blocks (${formatBytes(copied.chunks.bytes)}) written`,
      result: { target: { location: copy.location, id: copy.id, encrypted: copy.encrypted, created: copy.created }, ...copied },
      error: failed.length ? failed.slice(0, 5).map((f) => `${f.vm ?? f.id}: ${f.error}`).join('; ') : undefined,
    };
  },
  async prune({ target, signal, report }) {
    const sql = await getCatalogSql();
    const repo = await openRepository({ mustExist: true });
    report({ bytesDone: 0, bytesTotal: 0, bytesPerSecond: 0, message: 'removing the backups no rule keeps' });
    const pruned = await pruneBackups(sql, { repo, policy: target.retention ?? {}, timeZone: target.timeZone ?? 'UTC', source: target.pruneSource, vms: target.vms, signal });
    report({ bytesDone: 0, bytesTotal: 0, bytesPerSecond: 0, message: 'collecting garbage' });
    const gc = await runGarbageCollection(sql, { repo, signal });
    return {
      state: gc.pendingBytes > 0 ? 'partial' : 'succeeded',
      message: `${pruned.removed.length} backups removed, ${pruned.kept.length} kept; ${formatBytes(gc.freedBytes)} freed${gc.pendingBytes ? ` (${formatBytes(gc.pendingBytes)} pending)` : ''}`,
      result: { kept: pruned.kept.length, removed: pruned.removed, freedBytes: gc.freedBytes, pendingBytes: gc.pendingBytes },
      error: gc.pendingReason,
    };
  },
  async restore({ db, target, signal, report }) {
    const started = Date.now();
    const outcome = await runRestoreRequest(db, await getCatalogSql(), await openRepository({ mustExist: true }), {
      requestId: target.requestId!, signal,
      onProgress: (p) => report({ bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, bytesPerSecond: p.bytesDone / Math.max(0.001, (Date.now() - started) / 1000), message: p.disk ?? '' }),
    });
    return { state: outcome.ok ? 'succeeded' : 'failed', message: outcome.message, result: outcome.result, error: outcome.error };
  },
  async scan({ target, signal }) {
    const sql = await getCatalogSql();
    const [source] = await selectSources(sql, target.source);
    // Like every backup, a scan first records what the repository holds and the catalog lacks.
    const warnings: string[] = [];
    const repo = await openRepositoryIfAny({ sql });
    if (repo) await reconcileCatalog(sql, { repo, signal, onWarning: (message) => warnings.push(message) });
    const found = { ...(await recordInventory(sql, { sourceId: source.id, inventory: await scanWithMemo(source.id, (memo) => scanSource(source, { signal, memo })) })), warnings };
    return {
      state: 'succeeded',
      message: `${found.vms} VMs, ${found.disks} disks${found.problems.length ? `, ${found.problems.length} problem${found.problems.length === 1 ? '' : 's'}` : ''}`,
      result: found,
    };
  },
};

/**
 * Runs one queued job: marks it running, persists its progress (bytes, rate, what is at work) and a
 * heartbeat, then its outcome. A job that is not queued any more (failed as stale, say) is skipped.
 */
export async function runJob(db: Catalog, options: { jobId: string; signal?: AbortSignal; /** Who runs it (recorded on the job). */ worker?: string }): Promise<JobState | undefined> {
  const { jobId } = options;
  const claimed = await db.job.updateMany({ where: { id: jobId, state: 'queued' }, data: { state: 'running', startedAt: new Date(), heartbeatAt: new Date(), worker: options.worker, message: '' } });
  if (claimed.count === 0) return undefined;
  const job = await db.job.findUniqueOrThrow({ where: { id: jobId } });

  let lastWrite = 0;
  let writing: Promise<unknown> = Promise.resolve();
  // One write at a time, the latest figures win; progress never holds up the work.
  const write = (data: object) => { writing = writing.then(() => db.job.update({ where: { id: jobId }, data })).catch(() => undefined); };
  const beat = setInterval(() => write({ heartbeatAt: new Date() }), Math.min(10_000, (jobStaleSeconds() * 1000) / 4));
  const report = (progress: Progress) => {
    const now = Date.now();
    if (now - lastWrite < PROGRESS_EVERY_MS) return;
    lastWrite = now;
    write({ ...progress, bytesDone: BigInt(progress.bytesDone), bytesTotal: BigInt(progress.bytesTotal), heartbeatAt: new Date() });
  };
  let outcome: Outcome;
  try {
    outcome = await WORK[job.kind as JobKind]({ db, target: job.target as JobTarget, lane: parseLane(job.lane), scheduledJobId: job.scheduledJobId ?? undefined, signal: options.signal, report });
  } catch (err) {
    const error = options.signal?.aborted ? 'stopped: the worker was shut down; run it again (what was stored is reused)' : toAppError(err).userMessage;
    // Tried again: what may pass (a repository or catalog that was away, a worker shut down); not bad input, a job
    // removed or disabled, or a run stopped by its time limit.
    const retryable = options.signal?.aborted || !(err instanceof TimeLimitError || isUserError(toAppError(err)));
    outcome = { state: 'failed', message: '', result: {}, error, retry: retryable ? {} : undefined };
  } finally {
    clearInterval(beat);
    await writing;
  }
  const current = await db.job.findUniqueOrThrow({ where: { id: jobId }, select: { bytesTotal: true } });
  const finishedAt = new Date();
  const scheduled = job.scheduledJobId && outcome.retry ? await db.scheduledJob.findUnique({ where: { id: job.scheduledJobId } }) : null;
  const retryAt = scheduled ? retryAfter(scheduled, job.attempt, finishedAt) : null;
  await db.job.update({
    where: { id: jobId },
    data: {
      state: outcome.state, finishedAt, message: outcome.message, error: outcome.error ?? null, retryAt,
      result: { ...outcome.result, ...(retryAt && outcome.retry?.onlyVms ? { retryVms: outcome.retry.onlyVms } : {}) },
      // A finished job's bar ends full: what the run had to read, it read (the fast path reads nothing).
      ...(outcome.state === 'failed' ? {} : { bytesDone: current.bytesTotal }),
    },
  });
  await recordAudit(db, { actor: 'worker', action: `${job.kind}.finished`, target: job.label, detail: { jobId, state: outcome.state, message: outcome.message, error: outcome.error ?? null } });
  if (retryAt) {
    await recordAudit(db, { actor: 'worker', action: `${job.kind}.retry-due`, target: job.label, detail: { jobId, attempt: job.attempt, retryAt: retryAt.toISOString() } });
  } else if (outcome.state === 'failed' || outcome.state === 'partial') {
    // Told to every alert channel (a run tried again, once its last try went wrong); a channel that cannot be reached
    // changes nothing about the job.
    const event = job.kind === 'verify' ? (outcome.state === 'partial' ? 'verify.coverage' : 'verify.failed') : job.kind === 'gc' ? 'gc.pending' : outcome.state === 'failed' ? 'job.failed' : 'job.partial';
    const deliveries = await sendAlert(db, {
      event, severity: outcome.state === 'failed' ? 'error' : 'warning', subject: `${job.label}: ${outcome.state}`,
      message: [outcome.message, outcome.error].filter(Boolean).join(': ') + (job.attempt > 1 ? ` (attempt ${job.attempt}: the last retry)` : ''),
      details: { jobId, kind: job.kind, state: outcome.state, attempt: job.attempt },
    }).catch((err: Error) => [{ channel: 'alerts', ok: false, error: err.message }]);
    for (const d of deliveries) if (!d.ok) process.stderr.write(`vmdedup: alert to ${d.channel} not sent: ${d.error}\n`);
  }
  return outcome.state;
}

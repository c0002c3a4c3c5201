import { runBackup } from '../../services/backups/run-backup';
import { getCatalogSql } from '../../catalog/db';
import { DEFAULT_REREAD_AFTER_DAYS } from '../../engine/backup/backup';
import { formatBytes } from '../../format';
import { openRepository } from '../../open-repository';
import { type Command, type Flags, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, badInput, oneLine, parse } from '../command';
import { progressLine } from '../format';

const flags: Flags = { source: { type: 'string' }, vm: { type: 'string', multiple: true }, 'reread-after': { type: 'string' }, json: { type: 'boolean' } };

export const backupCommand: Command = {
  name: 'backup',
  help: `  backup [--source <name>] [--vm <name>]... [--reread-after <days>] [--json]
                                                          back up VMs (all VMs without --vm); a disk is read in full
                                                          when its stored version was read over <days> ago (default
                                                          ${DEFAULT_REREAD_AFTER_DAYS}; 0: every disk), else an unchanged disk is referenced;
                                                          exit 2: some VMs' input was bad, 1: the repository or the
                                                          catalog failed and the run stopped`,
  flags,
  async run(args, { io, signal, out, json }) {
    const { values } = parse(args, flags);
    const rereadAfter = values['reread-after'] as string | undefined;
    const rereadAfterDays = rereadAfter === undefined ? undefined : Number(rereadAfter);
    if (rereadAfterDays !== undefined && (!/^\d+(\.\d+)?$/.test(rereadAfter!) || !Number.isFinite(rereadAfterDays))) {
      throw badInput(`--reread-after must be a number of days (0 or more), not '${rereadAfter}'`);
    }
    const sql = await getCatalogSql();
    const repo = await openRepository();
    const showProgress = !values.json && io.stderr.isTTY;
    const report = await runBackup(sql, {
      source: values.source as string | undefined,
      vms: values.vm as string[] | undefined,
      rereadAfterDays,
      repo,
      signal,
      onWarning: (message) => { if (!values.json) io.stderr.write(`warning: ${message}\n`); },
      onProgress: showProgress
        ? (p) => io.stderr.write(`\r${progressLine({
          done: p.bytesDone, total: p.bytesTotal, rate: p.bytesPerSecond, eta: p.etaSeconds, label: p.disk,
          items: { done: p.vmsDone, total: p.vmsTotal, perSecond: p.vmsPerSecond, noun: 'VMs' },
        })}\x1b[K`)
        : undefined,
    });
    if (showProgress) io.stderr.write('\n');
    for (const problem of report.problems) io.stderr.write(`vmdedup: source '${problem.source}': ${oneLine(problem.message)}\n`);
    // One line per VM that failed; the VMs a stopped run did not reach are summed up in the line of the VM
    // that stopped it (the JSON lists each).
    const { stopped } = report;
    const skipped = report.failures.filter((failure) => !failure.attempted);
    const names = skipped.slice(0, 10).map((failure) => failure.vm).join(', ') + (skipped.length > 10 ? `, and ${skipped.length - 10} more` : '');
    const notReached = skipped.length ? `the run stopped: ${skipped.length} VM${skipped.length === 1 ? '' : 's'} not backed up (${names})` : '';
    if (stopped && !stopped.vm) io.stderr.write(`vmdedup: ${oneLine(stopped.error)}${notReached ? `; ${notReached}` : ''}\n`);
    let told = false;
    for (const failure of report.failures) {
      if (!failure.attempted) continue;
      const unrecorded = failure.backupId ? `; backup image ${failure.backupId} is in the repository, not in the catalog` : '';
      const stoppedHere = !told && stopped?.vm === failure.vm && stopped.source === failure.source && notReached;
      if (stoppedHere) told = true;
      io.stderr.write(`vmdedup: ${failure.vm}: ${oneLine(failure.error)}${unrecorded}${stoppedHere ? `; ${notReached}` : ''}\n`);
    }
    if (values.json) {
      json({
        backups: report.backups.map(({ vm, backupId, consistency, disks }) => ({ vm, backupId, ...(consistency ? { consistency } : {}), disks })),
        failures: report.failures.map(({ vm, source, error, attempted, backupId }) => ({ vm, source, error, attempted, ...(backupId ? { backupId } : {}) })),
        problems: report.problems,
        totals: report.totals,
        ...(report.warnings.length ? { warnings: report.warnings } : {}),
        ...(report.stopped ? { stopped: report.stopped } : {}),
      });
    } else {
      for (const backup of report.backups) {
        const stored = backup.disks.filter((d) => d.action === 'stored').length;
        out(`${backup.vm}: backup ${backup.backupId}${backup.consistency ? ` (${backup.consistency}-consistent)` : ''}, ${backup.disks.length} disks (${stored} stored, ${backup.disks.length - stored} referenced), read ${formatBytes(backup.disks.reduce((s, d) => s + d.bytesRead, 0))}, wrote ${formatBytes(backup.disks.reduce((s, d) => s + d.bytesWritten, 0))}`);
      }
      out(`total: ${report.backups.length} VMs backed up, ${report.failures.length} failed${report.problems.length ? `, ${report.problems.length} source problems` : ''}; logical ${formatBytes(report.totals.logicalBytes)}, read ${formatBytes(report.totals.bytesRead)}, written ${formatBytes(report.totals.bytesWritten)}`);
    }
    // A stopped run or an image the catalog did not record is a failure of the system, not of one VM's input.
    if (report.stopped || report.failures.some((failure) => failure.backupId)) return EXIT_FAILURE;
    return report.failures.length || report.problems.length ? EXIT_BAD_INPUT : EXIT_OK;
  },
};

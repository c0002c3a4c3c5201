/** `vmdedup job add|edit|list|remove|run`: scheduled jobs (backups with retention, gc, verify, sync), run by the worker's scheduler. */
import { getCatalog, getCatalogSql } from '../../catalog/db';
import { hasRules } from '../../engine/gc/retention';
import { formatBytes } from '../../format';
import { openRepository } from '../../open-repository';
import { type ScheduledJobInput, listScheduledJobs, removeScheduledJob, saveScheduledJob } from '../../services/jobs/scheduled-jobs';
import { runScheduledJob } from '../../services/jobs/run-scheduled-job';
import { type Command, type Flags, type Subcommand, type Values, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, badInput, runSubcommand } from '../command';
import { table } from '../format';
import { RETENTION_FLAGS, retentionFrom, sizeFlag } from './maintenance';

const jobFlags: Flags = {
  kind: { type: 'string' }, to: { type: 'string' }, 'outdated-after': { type: 'string' }, 'rpo-hours': { type: 'string' }, schedule: { type: 'string' }, 'time-zone': { type: 'string' }, source: { type: 'string' }, vm: { type: 'string', multiple: true },
  ...RETENTION_FLAGS, 'reread-after': { type: 'string' }, 'max-run-minutes': { type: 'string' },
  enable: { type: 'boolean' }, disable: { type: 'boolean' },
  retries: { type: 'string' }, 'retry-delay': { type: 'string' }, budget: { type: 'string' }, 'max-rate': { type: 'string' }, 'drill-vms': { type: 'string' },
};

function inputFrom(name: string, values: Values, edit: boolean): Partial<ScheduledJobInput> & { name: string } {
  const input: Partial<ScheduledJobInput> & { name: string } = { name };
  if (values.kind !== undefined) input.kind = values.kind as ScheduledJobInput['kind'];
  if (values.schedule !== undefined) input.schedule = values.schedule as string;
  if (values['time-zone'] !== undefined) input.timeZone = values['time-zone'] as string;
  else if (!edit) input.timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (values.source !== undefined) input.source = (values.source as string) || null;
  if (values.to !== undefined) input.syncTo = (values.to as string) || null;
  if (values.vm !== undefined) input.vmPatterns = values.vm as string[];
  const retention = retentionFrom(values);
  if (hasRules(retention) || (!edit && (values.kind ?? 'backup') === 'backup')) input.retention = retention;
  const number = (flag: string, whole: boolean) => {
    const text = values[flag] as string | undefined;
    if (text === undefined) return undefined;
    if (!(whole ? /^\d+$/ : /^\d+(\.\d+)?$/).test(text)) throw badInput(`--${flag} must be a ${whole ? 'whole ' : ''}number, not '${text}'`);
    return Number(text);
  };
  const reread = number('reread-after', false);
  if (reread !== undefined) input.rereadAfterDays = reread;
  const rpo = number('rpo-hours', false);
  if (rpo !== undefined) input.rpoHours = rpo;
  const outdated = number('outdated-after', false);
  if (outdated !== undefined) input.verifyOutdatedAfterDays = outdated;
  const minutes = number('max-run-minutes', true);
  if (minutes !== undefined) input.maxRunMinutes = minutes || null;
  const retries = number('retries', true);
  if (retries !== undefined) input.retries = retries;
  const delay = number('retry-delay', false);
  if (delay !== undefined) input.retryDelayMinutes = delay;
  const drills = number('drill-vms', true);
  if (drills !== undefined) input.drillVms = drills;
  // '0' clears a budget or a rate cap.
  if (values.budget !== undefined) input.verifyBudgetBytes = values.budget === '0' ? null : sizeFlag(values, 'budget');
  if (values['max-rate'] !== undefined) input.verifyMaxBytesPerSecond = values['max-rate'] === '0' ? null : sizeFlag(values, 'max-rate');
  if (values.enable && values.disable) throw badInput('--enable and --disable together');
  if (values.enable) input.enabled = true;
  if (values.disable) input.enabled = false;
  return input;
}

const describeRetention = (r: Record<string, number | undefined>) => Object.entries(r).filter(([, v]) => v).map(([k, v]) => (k === 'withinMs' ? `within ${Math.round(v! / 86_400_000)}d` : `${k} ${v}`)).join(', ') || 'keep all';

const subcommands: Record<string, Subcommand> = {
  add: {
    flags: jobFlags, positionals: 1,
    async run({ values, positionals: [name] }, { out }) {
      if (!values.schedule) throw badInput("job add needs --schedule '<minute> <hour> <day> <month> <weekday>' (e.g. '0 2 * * *': every day at 02:00)");
      const job = await saveScheduledJob(await getCatalog(), inputFrom(name, values, false));
      out(`added ${job.kind} job ${job.name}: ${job.schedule} (${job.timeZone}), next run ${job.nextRunAt ?? 'never (disabled)'}; the worker (npm run worker, or npm start) runs it`);
      return EXIT_OK;
    },
  },
  edit: {
    flags: jobFlags, positionals: 1,
    async run({ values, positionals: [name] }, { out }) {
      const job = await saveScheduledJob(await getCatalog(), inputFrom(name, values, true), { edit: true });
      out(`changed ${job.kind} job ${job.name}: ${job.schedule} (${job.timeZone}), ${job.enabled ? `next run ${job.nextRunAt}` : 'disabled'}`);
      return EXIT_OK;
    },
  },
  list: {
    flags: { json: { type: 'boolean' } },
    async run({ values }, { out, json }) {
      const jobs = await listScheduledJobs(await getCatalog());
      if (values.json) json({ jobs });
      else out(jobs.length ? table([['NAME', 'KIND', 'SCHEDULE', 'TIME ZONE', 'WHAT', 'KEEP', 'NEXT RUN', 'LAST SUCCESS'], ...jobs.map((j) => [
        j.name, j.kind, j.schedule, j.timeZone, j.kind === 'gc' ? 'the repository' : j.kind === 'sync' ? `copy to ${j.syncTo}` : `${j.source ?? 'all sources'}${j.vmPatterns.length ? `: ${j.vmPatterns.join(' ')}` : ''}${j.verifyOutdatedAfterDays != null ? `, not verified for ${j.verifyOutdatedAfterDays}d` : ''}`,
        j.kind === 'backup' ? describeRetention(j.retention) : '-', j.enabled ? j.nextRunAt ?? '-' : 'disabled', j.lastSuccessAt ?? 'never',
      ])]) : "no backup jobs (add one with: vmdedup job add <name> --schedule '0 2 * * *' --keep-daily 7)");
      return EXIT_OK;
    },
  },
  remove: {
    flags: {}, positionals: 1,
    async run({ positionals: [name] }, { out }) {
      await removeScheduledJob(await getCatalog(), name);
      out(`removed job ${name} (its past runs and the backups it made stay)`);
      return EXIT_OK;
    },
  },
  run: {
    flags: { json: { type: 'boolean' } }, positionals: 1,
    async run({ values, positionals: [name] }, { out, json, signal }) {
      const run = await runScheduledJob(await getCatalog(), await getCatalogSql(), { name, repo: await openRepository({ mustExist: true }), signal });
      if (run.kind === 'gc') {
        if (values.json) json({ gc: run.gc });
        else out(`${name}: removed ${run.gc.removedChunks} chunks and ${run.gc.removedDisks} stored disks, ${formatBytes(run.gc.freedBytes)}${run.gc.pendingBytes ? `; pending ${formatBytes(run.gc.pendingBytes)}: ${run.gc.pendingReason}` : ''}`);
        return EXIT_OK;
      }
      if (run.kind === 'verify') {
        const failed = run.verify.images.filter((i) => i.status === 'failed');
        const failedDrills = run.drills.filter((d) => d.status === 'failed');
        if (values.json) json({ verify: { checkedChunks: run.verify.checkedChunks, damaged: run.verify.damaged, images: run.verify.images, deferred: run.verify.deferred, overdue: run.verify.overdue }, drills: run.drills });
        else {
          out(`${name}: verified ${run.verify.images.length} backups, ${failed.length} failed, ${run.verify.checkedChunks} chunks checked${run.verify.deferred ? `; ${run.verify.deferred} left for the next run (budget)${run.verify.overdue ? `, ${run.verify.overdue} overdue` : ''}` : ''}`);
          for (const d of run.drills) out(`  restore drill ${d.vm} ${d.backupId}: ${d.status}${d.problems.length ? `: ${d.problems.join('; ')}` : ''}`);
        }
        return failed.length || failedDrills.length ? EXIT_FAILURE : run.verify.overdue ? EXIT_BAD_INPUT : EXIT_OK;
      }
      if (run.kind === 'sync') {
        const { report, target } = run.sync;
        if (values.json) json({ sync: { target: { location: target.location, id: target.id, encrypted: target.encrypted, created: target.created }, ...report } });
        else {
          out(`${name}: copied ${report.images.copied} backups to ${target.location} (${report.images.alreadyCopied} were there), ${report.chunks.copied} blocks (${formatBytes(report.chunks.bytes)}) written`);
          for (const failed of report.images.failed) out(`  not copied: ${failed.id}${failed.vm ? ` (${failed.vm})` : ''}: ${failed.error}`);
        }
        return report.images.failed.length ? EXIT_FAILURE : EXIT_OK;
      }
      const { backup, prune } = run;
      if (values.json) json({ backups: backup.backups.map(({ vm, source, backupId }) => ({ vm, source, backupId })), failures: backup.failures, problems: backup.problems, totals: backup.totals, ...(prune ? { prune } : {}), ...(run.pruneError ? { pruneError: run.pruneError } : {}) });
      else {
        out(`${name}: ${backup.backups.length} VMs backed up, ${backup.failures.length} failed; written ${formatBytes(backup.totals.bytesWritten)}`);
        for (const failure of backup.failures) out(`  ${failure.vm}: ${failure.error}`);
        if (prune) out(`retention: ${prune.kept.length} backups kept, ${prune.removed.length} removed (${formatBytes(prune.freedBytes)} for gc to reclaim)`);
        if (run.pruneError) out(`retention not applied: ${run.pruneError}`);
      }
      if (backup.stopped) return EXIT_FAILURE;
      return backup.failures.length || backup.problems.length || run.pruneError ? EXIT_BAD_INPUT : EXIT_OK;
    },
  },
};

export const jobCommand: Command = {
  name: 'job',
  help: `  job add <name> --schedule '<cron>' [--kind backup|gc|verify|sync] [--to <repository>] [--time-zone <zone>] [--source <name>]
          [--vm <pattern>]... [--keep-… N]... [--reread-after <days>] [--rpo-hours <h>]
          [--outdated-after <days>] [--budget <size>] [--max-rate <size>/s] [--drill-vms N]
          [--max-run-minutes <m>] [--retries N] [--retry-delay <minutes>] [--disable]
                                                          a scheduled job: the worker backs up those VMs (names: * and
                                                          ?) on the schedule (cron: minute hour day month weekday), then
                                                          applies the --keep-… rules (as prune's); or collects garbage;
                                                          or verifies (--outdated-after: what was not verified for that
                                                          long; --budget, --max-rate: its I/O budget; --drill-vms:
                                                          restore drills per run); or copies the backups into --to
                                                          (as sync --to); a run missed while no worker ran
                                                          fires once; a failed run is tried again --retries times
                                                          (default 2), after --retry-delay minutes (default 10),
                                                          doubling each time
  job edit <name> [the same flags] [--enable|--disable]   change a backup job
  job list [--json]                                       backup jobs, their next runs and last successes
  job remove <name>                                       remove a backup job (its backups stay)
  job run <name> [--json]                                 run a backup job now, in this process`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'job' subcommand '${sub}': use add, edit, list, remove or run`),
};

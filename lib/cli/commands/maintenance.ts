/** `vmdedup prune` (retention), `vmdedup gc` (garbage collection), `vmdedup verify` and `vmdedup drill` (restore drills). */
import { getCatalogSql } from '../../catalog/db';
import { type RetentionPolicy, isTimeZone } from '../../engine/gc/retention';
import { formatBytes, parseByteSize } from '../../format';
import { openRepository } from '../../open-repository';
import { runGarbageCollection } from '../../services/maintenance/collect-garbage';
import { pruneBackups } from '../../services/maintenance/prune-backups';
import { verifyBackups } from '../../services/maintenance/verify-backups';
import { drillRestores } from '../../services/maintenance/drill-restores';
import { type Command, type Flags, type Values, EXIT_FAILURE, EXIT_OK, badInput, parse } from '../command';

const KEEP_COUNTS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;

/** The --keep-… flags of prune and of backup jobs. */
export const RETENTION_FLAGS: Flags = {
  ...Object.fromEntries(KEEP_COUNTS.map((rule) => [`keep-${rule}`, { type: 'string' }])),
  'keep-within': { type: 'string' },
};

/** The retention policy the --keep-… flags give ({} when none is given). */
export function retentionFrom(values: Values): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const rule of KEEP_COUNTS) {
    const text = values[`keep-${rule}`] as string | undefined;
    if (text === undefined) continue;
    if (!/^\d+$/.test(text) || Number(text) > 1_000_000) throw badInput(`--keep-${rule} must be a whole number (0 or more), not '${text}'`);
    policy[rule] = Number(text);
  }
  if (values['keep-within'] !== undefined) policy.withinMs = parseDuration(values['keep-within'] as string);
  return policy;
}

const pruneFlags: Flags = {
  vm: { type: 'string', multiple: true }, source: { type: 'string' }, ...RETENTION_FLAGS,
  'time-zone': { type: 'string' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' },
};

/** `30d`, `12h`, `2w`, `1y6m`: y = 365 days, m = 30 days, w = 7 days. */
export function parseDuration(text: string): number {
  const match = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?$/.exec(text);
  if (!text || !match) throw badInput(`--keep-within must be a duration such as 30d, 12h, 2w or 1y6m, not '${text}'`);
  const [, y, m, w, d, h] = match.map((part) => Number(part ?? 0));
  return ((((y * 365 + m * 30 + w * 7 + d) * 24) + h) * 3600 * 1000);
}

export const pruneCommand: Command = {
  name: 'prune',
  help: `  prune [--vm <name>]... [--source <name>] [--keep-last N] [--keep-hourly N] [--keep-daily N]
        [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-within <30d|12h|1y6m>]
        [--time-zone <IANA zone>] [--dry-run] [--json]
                                                          remove the backups no rule keeps, per VM (rules as restic's
                                                          forget: each keeps on its own, a period without a backup
                                                          does not count; protected backups stay); --dry-run shows
                                                          what each rule keeps and what would be freed. The space is
                                                          freed by 'vmdedup gc'`,
  flags: pruneFlags,
  async run(args, { out, json, signal, io }) {
    const { values } = parse(args, pruneFlags);
    const policy = retentionFrom(values);
    const timeZone = (values['time-zone'] as string | undefined) ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!isTimeZone(timeZone)) throw badInput(`unknown time zone '${timeZone}' (an IANA name such as Europe/Berlin, or UTC)`);
    const report = await pruneBackups(await getCatalogSql(), {
      repo: await openRepository({ mustExist: true }),
      policy, timeZone, vms: values.vm as string[] | undefined, source: values.source as string | undefined,
      dryRun: !!values['dry-run'], signal,
      onWarning: (message) => { if (!values.json) io.stderr.write(`warning: ${message}\n`); },
    });
    if (values.json) {
      json(report);
      return EXIT_OK;
    }
    for (const kept of report.kept) out(`keep    ${kept.backupId}  ${kept.vm}  (${kept.reasons.join(', ')})`);
    for (const removed of report.removed) out(`${report.dryRun ? 'would remove' : 'removed'}  ${removed.backupId}  ${removed.vm}`);
    const vms = new Set([...report.kept, ...report.removed].map((b) => `${b.source}/${b.vm}`)).size;
    out(`${report.dryRun ? 'dry run: ' : ''}${vms} VMs: ${report.kept.length} backups kept, ${report.removed.length} ${report.dryRun ? 'would be ' : ''}removed; ${formatBytes(report.freedBytes)} ${report.dryRun ? 'would become' : 'became'} free for 'vmdedup gc' to reclaim`);
    return EXIT_OK;
  },
};

const gcFlags: Flags = { 'dry-run': { type: 'boolean' }, json: { type: 'boolean' }, wait: { type: 'string' } };

export const gcCommand: Command = {
  name: 'gc',
  help: `  gc [--dry-run] [--wait <seconds>] [--json]             remove the chunks and stored disks no backup image needs;
                                                          safe while backups run: it waits up to --wait (default
                                                          600) for backups that started before it, else leaves the
                                                          rest pending for the next gc`,
  flags: gcFlags,
  async run(args, { out, json, signal, io }) {
    const { values } = parse(args, gcFlags);
    const waitText = values.wait as string | undefined;
    if (waitText !== undefined && !/^\d+$/.test(waitText)) throw badInput(`--wait must be a number of seconds, not '${waitText}'`);
    const showProgress = !values.json && io.stderr.isTTY;
    const report = await runGarbageCollection(await getCatalogSql(), {
      repo: await openRepository({ mustExist: true }),
      dryRun: !!values['dry-run'], waitMs: waitText === undefined ? undefined : Number(waitText) * 1000, signal,
      onProgress: showProgress ? (p) => io.stderr.write(`\r${p.message}${p.total ? ` ${p.done ?? 0}/${p.total}` : ''}\x1b[K`) : undefined,
    });
    if (showProgress) io.stderr.write('\n');
    if (values.json) {
      json(report);
      return EXIT_OK;
    }
    const verb = report.dryRun ? 'would remove' : 'removed';
    out(`${report.dryRun ? 'dry run: ' : ''}${verb} ${report.removedChunks} chunks and ${report.removedDisks} stored disks, ${formatBytes(report.freedBytes)} (of ${report.chunks} chunks and ${report.disks} stored disks, ${report.images} backup images read)`);
    if (report.pendingBytes > 0) out(`pending: ${report.pendingChunks} chunks, ${formatBytes(report.pendingBytes)}: ${report.pendingReason}`);
    if (report.missingDisks.length) io.stderr.write(`vmdedup: warning: ${report.missingDisks.length} stored disks that backup images name are missing from the repository (${report.missingDisks.slice(0, 3).map((d) => d.slice(0, 12)).join(', ')}${report.missingDisks.length > 3 ? ', …' : ''})\n`);
    return EXIT_OK;
  },
};

const verifyFlags: Flags = { vm: { type: 'string', multiple: true }, 'outdated-after': { type: 'string' }, budget: { type: 'string' }, 'max-rate': { type: 'string' }, json: { type: 'boolean' } };

/** A --budget or --max-rate size (500M, 2G, 1T; per second for a rate), or undefined when not given. */
export function sizeFlag(values: Values, flag: string): number | undefined {
  const text = values[flag] as string | undefined;
  if (text === undefined) return undefined;
  const bytes = parseByteSize(text.replace(/\/s$/i, ''));
  if (!bytes) throw badInput(`--${flag} must be a size such as 500M, 20G or 1T${flag === 'max-rate' ? ' (per second)' : ''}, not '${text}'`);
  return bytes;
}

export const verifyCommand: Command = {
  name: 'verify',
  help: `  verify [--vm <name>]... [--outdated-after <days>] [--budget <size>] [--max-rate <size>/s] [--json]
                                                          re-read and re-hash what backups need (each chunk once);
                                                          --outdated-after: only backups not verified for <days>;
                                                          --budget: read at most that much (those waiting longest
                                                          first); --max-rate: read no faster than that; a
                                                          damaged chunk is moved aside and stored again by the next
                                                          backup of that content; exit 1 when something is damaged`,
  flags: verifyFlags,
  async run(args, { out, json, signal, io }) {
    const { values } = parse(args, verifyFlags);
    const outdated = values['outdated-after'] as string | undefined;
    if (outdated !== undefined && !/^\d+(\.\d+)?$/.test(outdated)) throw badInput(`--outdated-after must be a number of days, not '${outdated}'`);
    const showProgress = !values.json && io.stderr.isTTY;
    const report = await verifyBackups(await getCatalogSql(), {
      repo: await openRepository({ mustExist: true }),
      vms: values.vm as string[] | undefined, outdatedAfterDays: outdated === undefined ? undefined : Number(outdated), signal,
      budgetBytes: sizeFlag(values, 'budget'), maxBytesPerSecond: sizeFlag(values, 'max-rate'),
      onWarning: (message) => { if (!values.json) io.stderr.write(`warning: ${message}\n`); },
      onProgress: showProgress ? (p) => io.stderr.write(`\rverifying: ${p.imagesDone}/${p.imagesTotal} backups, ${p.checkedChunks} chunks, ${formatBytes(p.bytesRead)}\x1b[K`) : undefined,
    });
    if (showProgress) io.stderr.write('\n');
    const failed = report.images.filter((image) => image.status === 'failed');
    if (values.json) {
      json({
        checkedChunks: report.checkedChunks, bytesRead: report.bytesRead, deferred: report.deferred, overdue: report.overdue,
        damaged: report.damaged.map(({ chunk, images, problem }) => ({ chunk, images, problem })),
        images: report.images.map(({ backupId, vm, status, problems }) => ({ backupId, vm, status, ...(problems.length ? { problems } : {}) })),
      });
    } else {
      for (const image of failed) out(`failed  ${image.backupId}  ${image.vm}: ${image.problems.slice(0, 3).join('; ')}${image.problems.length > 3 ? `; and ${image.problems.length - 3} more` : ''}`);
      out(`verified ${report.images.length} backups: ${report.images.length - failed.length} ok, ${failed.length} failed; ${report.checkedChunks} chunks checked (${formatBytes(report.bytesRead)}), ${report.damaged.length} damaged${report.damaged.length ? ' (moved aside where corrupt: the next backup of that content stores it again)' : ''}`);
      if (report.deferred) out(`budget spent: ${report.deferred} backups left for the next run${report.overdue ? `, ${report.overdue} of them not verified for more than ${outdated} days` : ''}`);
    }
    return failed.length ? EXIT_FAILURE : EXIT_OK;
  },
};

const drillFlags: Flags = { vm: { type: 'string', multiple: true }, count: { type: 'string' }, scratch: { type: 'string' }, json: { type: 'boolean' } };

export const drillCommand: Command = {
  name: 'drill',
  help: `  drill [--vm <name>]... [--count N] [--scratch <dir>] [--json]
                                                          restore drills: restore VMs' newest backups into scratch
                                                          space (--scratch; default the temp folder), compare every
                                                          disk with the backup block for block, qemu-img check it,
                                                          then remove it; --count: that many VMs (default 1), drilled
                                                          longest ago first; exit 1 when a drill failed`,
  flags: drillFlags,
  async run(args, { out, json, signal, io }) {
    const { values } = parse(args, drillFlags);
    const count = values.count as string | undefined;
    if (count !== undefined && !/^[1-9]\d*$/.test(count)) throw badInput(`--count must be a whole number of VMs, not '${count}'`);
    const drills = await drillRestores(await getCatalogSql(), {
      repo: await openRepository({ mustExist: true }), vms: values.vm as string[] | undefined, count: count === undefined ? undefined : Number(count),
      scratchDir: values.scratch as string | undefined, signal,
      onDrill: values.json || !io.stderr.isTTY ? undefined : ({ vm, index, total }) => io.stderr.write(`drill ${index + 1}/${total}: ${vm}\n`),
    });
    if (values.json) json({ drills });
    else {
      for (const d of drills) out(`${d.status === 'ok' ? 'ok    ' : 'failed'}  ${d.backupId}  ${d.vm} (${d.source}): ${d.disks} disks restored and checked, ${formatBytes(d.bytesWritten)} in ${d.seconds.toFixed(1)} s${d.problems.length ? `: ${d.problems.join('; ')}` : ''}`);
      if (drills.length === 0) out('no backups to drill');
    }
    return drills.some((d) => d.status === 'failed') ? EXIT_FAILURE : EXIT_OK;
  },
};

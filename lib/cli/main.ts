import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { describeAuditChain, verifyAuditChain } from '../services/audit/verify-audit-chain';
import { embeddedCatalogStatus, stopEmbeddedCatalog } from '../catalog/embedded-postgres';
import { rebuildCatalog } from '../services/backups/rebuild-catalog';
import { reconcileCatalog } from '../services/backups/reconcile-catalog';
import { getStats } from '../services/reports/get-stats';
import { listBackups } from '../services/reports/list-backups';
import { listCommonDisks } from '../services/reports/list-common-disks';
import { type RestoreRequest, planVmRestore } from '../services/restores/plan-vm-restore';
import { restoreVm } from '../services/restores/restore-vm';
import { runBackup } from '../services/backups/run-backup';
import { DEFAULT_REREAD_AFTER_DAYS } from '../engine/backup/backup';
import { RESTORE_CHOICES, RESTORE_POLICIES, type RestoreChoice, type RestorePolicy } from '../engine/restore/plan';
import { addSource } from '../services/sources/add-source';
import { listSources } from '../services/sources/list-sources';
import { selectSources } from '../services/sources/select-sources';
import { vmdedupHome } from '../config';
import { prepareHome } from '../home';
import { appCatalogUrl, catalogUrl, closeCatalog, getCatalog, getCatalogSql, setIdleConnectionLostListener } from '../catalog/db';
import { initRepository, openRepository, openRepositoryFolder, openRepositoryIfAny } from '../open-repository';
import type { z } from 'zod';
import { InputError } from '../engine/errors';
import { scanSource } from '../engine/sources/inventory';
import { AppError, isUserError, toAppError } from '../errors';
import { formatBytes } from '../format';
import { progressLine, table } from './format';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_NEEDS_CONFIRMATION = 3;
export const EXIT_INTERRUPTED = 130;

const USAGE = `usage: vmdedup <command> [options]

  source add <name> --type libvirt|vmware --path <dir>   register a source of VMs
  source list [--json]                                    list sources
  inventory [--source <name>] [--json]                    VMs, disks, pointers, parent chains, shared disks (live)
  backup [--source <name>] [--vm <name>]... [--reread-after <days>] [--json]
                                                          back up VMs (all VMs without --vm); a disk is read in full
                                                          when its stored version was read over <days> ago (default
                                                          ${DEFAULT_REREAD_AFTER_DAYS}; 0: every disk), else an unchanged disk is referenced;
                                                          exit 2: some VMs' input was bad, 1: the repository or the
                                                          catalog failed and the run stopped
  backups [--vm <name>] [--json]                          list backup images
  common-disks [--json]                                   disks shared by several VMs, and what they cost
  stats [--json]                                          catalog totals and savings
  restore-plan <vm> [--backup <id>] (--target <dir> | --in-place) [--policy no-overwrite|overwrite] [--json]
                                                          plan a restore: common disks, pointer drift; writes nothing
  restore <vm> [--backup <id>] (--target <dir> | --in-place) [--policy no-overwrite|overwrite]
               [--choice reattach|copy] [--confirm-drift] [--json]
                                                          restore a VM (exit 3: drift or overwrite needs --confirm-drift)
  catalog rebuild [--adopt]                               recreate the catalog from the repository alone (in one transaction;
                                                          --adopt: index this repository even if the catalog indexed another)
  repository init [--replace]                             create the repository (VMDEDUP_REPOSITORY) in an empty folder;
                                                          --replace: the catalog's repository is lost for good: start anew
                                                          and forget the records of its backups
  user add <name> --role viewer|operator|approver|admin [--email <e>] [--password-stdin | --sso-only]
  user set-password <name> [--password-stdin]             dashboard users (without --password-stdin a password is generated and shown once)
  user list [--json]                                      users, roles, status, two-step sign-in (2FA), single sign-on link
  user reset-2fa <name>                                   remove a user's two-step sign-in (lost phone); ends their sessions
  audit verify [--json]                                   check the audit log's hash chain (exit 1: it names the first
                                                          event rewritten, deleted, inserted or moved)
  db status | db stop                                     the embedded catalog database
  db url [--app]                                          the catalog's admin connection URL (with its password: for psql);
                                                          --app: the app role's, for VMDEDUP_APP_DATABASE_URL

Data lives under VMDEDUP_HOME (default ./data); DATABASE_URL selects an external PostgreSQL (its role owns the
catalog; work runs as the app role, see README "Catalog database roles"). The repository
(VMDEDUP_REPOSITORY, default $VMDEDUP_HOME/repository) is created by the first backup of a new catalog, else only
by 'repository init': a missing one (an unmounted disk) or another one than the catalog's is an error (exit 1).
Backups, scans, stats and restores first record any backup image the repository holds and the catalog lacks.`;

type Io = { stdout: NodeJS.WritableStream & { isTTY?: boolean }; stderr: NodeJS.WritableStream & { isTTY?: boolean } };

/** Runs one CLI command; returns the exit code. Never throws. */
export async function main(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const controller = new AbortController();
  // An idle connection the server dropped is no problem of its own: the pool reconnects, and a command the loss
  // makes fail says so in its one line.
  setIdleConnectionLostListener(() => undefined);
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (!['help', '--help', '-h', undefined].includes(argv[0])) {
      for (const notice of await prepareHome()) io.stderr.write(`vmdedup: ${notice}\n`);
    }
    return await dispatch(argv, io, controller.signal);
  } catch (err) {
    if (controller.signal.aborted) {
      io.stderr.write('vmdedup: interrupted; what was already stored is kept, and the next run reuses it\n');
      return EXIT_INTERRUPTED;
    }
    const error = toAppError(err);
    if (error.code === 'INTERNAL' && process.env.VMDEDUP_DEBUG) io.stderr.write(`${(err as Error).stack}\n`);
    io.stderr.write(`vmdedup: ${oneLine(error.userMessage)}\n`);
    return isUserError(error) ? EXIT_BAD_INPUT : EXIT_FAILURE;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await closeCatalog().catch(() => undefined);
  }
}

async function dispatch(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const [command, ...rest] = argv;
  const out = (text: string) => io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  const json = (value: unknown) => out(JSON.stringify(value, null, 2));
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      out(USAGE);
      return command === undefined ? EXIT_BAD_INPUT : EXIT_OK;

    case 'source': {
      const [sub, ...args] = rest;
      if (sub === 'add') {
        const { values, positionals } = parse(args, { type: { type: 'string' }, path: { type: 'string' } }, 1);
        if (!values.type || !values.path) throw badInput('source add needs --type libvirt|vmware and --path <dir>');
        const source = await addSource(await getCatalogSql(), { name: positionals[0], type: values.type as string, path: values.path as string });
        out(`added source ${source.name} (${source.type}, ${source.path})`);
        return EXIT_OK;
      }
      if (sub === 'list') {
        const { values } = parse(args, { json: { type: 'boolean' } });
        const sources = await listSources(await getCatalogSql());
        if (values.json) json({ sources: sources.map(({ name, type, path: dir }) => ({ name, type, path: dir })) });
        else out(sources.length ? table([['NAME', 'TYPE', 'PATH'], ...sources.map((s) => [s.name, s.type, s.path])]) : 'no sources (add one with: vmdedup source add <name> --type libvirt|vmware --path <dir>)');
        return EXIT_OK;
      }
      throw badInput(`unknown 'source' subcommand '${sub ?? ''}': use 'source add' or 'source list'`);
    }

    case 'user': {
      const [sub, ...args] = rest;
      // Loaded here only: the password hashing addon has no business in a backup's memory.
      const [{ generatePassword }, { createUser }, { listUsers }, { resetPassword }, { ZCreateUser, ZResetPassword }] = await Promise.all([
        import('../auth/passwords'), import('../services/users/create-user'), import('../services/users/list-users'),
        import('../services/users/reset-password'), import('../validation/users'),
      ]);
      const db = await getCatalog();
      const password = async (values: Values) => (values['password-stdin'] ? (await readStdin()).replace(/\r?\n$/, '') : generatePassword());
      const show = (values: Values, name: string, secret: string) => { if (!values['password-stdin']) out(`password for ${name} (shown only now): ${secret}`); };
      if (sub === 'add') {
        const { values, positionals } = parse(args, { role: { type: 'string' }, email: { type: 'string' }, 'password-stdin': { type: 'boolean' }, 'sso-only': { type: 'boolean' } }, 1);
        if (values['sso-only'] && values['password-stdin']) throw badInput('--sso-only and --password-stdin exclude each other');
        const secret = values['sso-only'] ? '' : await password(values);
        const user = validated(ZCreateUser, { username: positionals[0], role: values.role, email: values.email, password: secret });
        await createUser(db, { actor: 'cli', user });
        out(`added user ${user.username} (${user.role})${secret ? '' : `, signing in only by single sign-on as ${user.email}`}`);
        if (secret) show(values, user.username, secret);
        return EXIT_OK;
      }
      if (sub === 'set-password') {
        const { values, positionals } = parse(args, { 'password-stdin': { type: 'boolean' } }, 1);
        const found = await db.user.findUnique({ where: { username: positionals[0].toLowerCase() } });
        if (!found) throw new AppError('NOT_FOUND', { message: `no user named '${positionals[0]}' (see 'vmdedup user list')` });
        const secret = await password(values);
        await resetPassword(db, { actor: 'cli', reset: validated(ZResetPassword, { userId: found.id, password: secret }) });
        out(`new password set for ${found.username}; the account is unlocked and its sessions have ended`);
        show(values, found.username, secret);
        return EXIT_OK;
      }
      if (sub === 'list') {
        const { values } = parse(args, { json: { type: 'boolean' } });
        const users = await listUsers(db);
        if (values.json) {
          json({ users: users.map(({ username, email, role, disabled, locked, secondFactor, singleSignOnBound }) => ({ username, email, role, disabled, locked, secondFactor, singleSignOnBound })) });
        } else {
          out(table([['USER', 'ROLE', 'EMAIL', 'STATUS', '2FA', 'SSO'], ...users.map((u) => [
            u.username, u.role, u.email ?? '', u.disabled ? 'disabled' : u.locked ? 'locked' : 'active',
            u.secondFactor ? 'on' : u.hasPassword ? 'off' : '-', u.singleSignOnBound ? 'linked' : u.hasPassword ? '-' : 'only',
          ])]));
        }
        return EXIT_OK;
      }
      if (sub === 'reset-2fa') {
        const { positionals } = parse(args, {}, 1);
        const found = await db.user.findUnique({ where: { username: positionals[0].toLowerCase() } });
        if (!found) throw new AppError('NOT_FOUND', { message: `no user named '${positionals[0]}' (see 'vmdedup user list')` });
        const { resetSecondFactor } = await import('../services/users/reset-second-factor');
        const reset = await resetSecondFactor(db, { actor: 'cli', userId: found.id });
        out(reset.hadSecondFactor
          ? `two-step sign-in of ${reset.username} removed; their sessions have ended, and they sign in with their password alone until they set it up again`
          : `${reset.username} had no two-step sign-in (nothing changed)`);
        return EXIT_OK;
      }
      throw badInput(`unknown 'user' subcommand '${sub ?? ''}': use 'user add', 'user set-password', 'user list' or 'user reset-2fa'`);
    }

    case 'inventory': {
      const { values } = parse(rest, { source: { type: 'string' }, json: { type: 'boolean' } });
      const sources = await selectSources(await getCatalogSql(), values.source as string | undefined);
      const inventories = [];
      // A source that cannot be read is one line (exit 2); the others are still shown.
      const unreadable: { source: string; error: string }[] = [];
      for (const source of sources) {
        try {
          inventories.push(await scanSource(source, { signal }));
        } catch (err) {
          if (!(err instanceof InputError)) throw err;
          unreadable.push({ source: source.name, error: err.message });
        }
      }
      for (const problem of unreadable) io.stderr.write(`vmdedup: source '${problem.source}': ${oneLine(problem.error)}\n`);
      const inventoryExit = unreadable.length ? EXIT_BAD_INPUT : EXIT_OK;
      const report = inventories.map((inv) => ({
        source: inv.source.name, type: inv.source.type, path: inv.root, warnings: inv.warnings, problems: inv.problems.map((p) => p.message),
        vms: inv.vms.map((vm) => ({
          name: vm.name, uuid: vm.uuid, configPath: vm.configPath, error: vm.error,
          slots: vm.slots.map((s) => ({ slot: s.slot, device: s.device, target: s.target, format: s.format, shareable: s.shareable, readonly: s.readonly, serial: s.serial, wwn: s.wwn, mode: s.mode, sharing: s.sharing, backedUp: s.backedUp, note: s.note })),
          disks: vm.disks.map((use) => {
            const disk = inv.disks.get(use.diskPath)!;
            const usedBy = inv.usedBy.get(use.diskPath) ?? [];
            return {
              path: disk.path, identifier: disk.identifier, format: disk.format, via: use.via, slot: use.slot, target: use.target,
              parent: disk.parent ? { pointer: disk.parent.pointer, path: disk.parent.path } : undefined,
              versionToken: disk.versionToken, logicalBytes: disk.logicalBytes, virtualSize: disk.virtualSize,
              vmdk: disk.vmdk, usedBy, common: usedBy.length > 1,
            };
          }),
        })),
      }));
      if (values.json) {
        json({ sources: report, ...(unreadable.length ? { unreadable } : {}) });
        return inventoryExit;
      }
      for (const source of report) {
        out(`source ${source.source} (${source.type}, ${source.path})`);
        for (const warning of source.warnings) out(`  warning: ${warning}`);
        for (const problem of source.problems) out(`  problem: ${problem}`);
        for (const vm of source.vms) {
          out(`  vm ${vm.name}${vm.error ? `  ERROR: ${vm.error}` : ''}`);
          for (const disk of vm.disks) {
            const shared = disk.common ? `  common: ${disk.usedBy.join(', ')}` : '';
            out(`    ${disk.via === 'attached' ? (disk.slot ?? '') : '  parent'} ${path.relative(source.path, disk.path)} [${disk.format}, ${formatBytes(disk.logicalBytes)}]${disk.parent ? ` -> ${disk.parent.pointer}` : ''}${shared}`);
          }
          for (const slot of vm.slots.filter((s) => !s.backedUp)) out(`    ${slot.slot} ${slot.target ?? ''} (${slot.note})`);
        }
      }
      return inventoryExit;
    }

    case 'backup': {
      const { values } = parse(rest, { source: { type: 'string' }, vm: { type: 'string', multiple: true }, 'reread-after': { type: 'string' }, json: { type: 'boolean' } });
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
          ? (p) => io.stderr.write(`\r${progressLine({ done: p.bytesDone, total: p.bytesTotal, rate: p.bytesPerSecond, eta: p.etaSeconds, label: p.disk })}\x1b[K`)
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
          backups: report.backups.map(({ vm, backupId, disks }) => ({ vm, backupId, disks })),
          failures: report.failures.map(({ vm, source, error, attempted, backupId }) => ({ vm, source, error, attempted, ...(backupId ? { backupId } : {}) })),
          problems: report.problems,
          totals: report.totals,
          ...(report.stopped ? { stopped: report.stopped } : {}),
        });
      } else {
        for (const backup of report.backups) {
          const stored = backup.disks.filter((d) => d.action === 'stored').length;
          out(`${backup.vm}: backup ${backup.backupId}, ${backup.disks.length} disks (${stored} stored, ${backup.disks.length - stored} referenced), read ${formatBytes(backup.disks.reduce((s, d) => s + d.bytesRead, 0))}, wrote ${formatBytes(backup.disks.reduce((s, d) => s + d.bytesWritten, 0))}`);
        }
        out(`total: ${report.backups.length} VMs backed up, ${report.failures.length} failed${report.problems.length ? `, ${report.problems.length} source problems` : ''}; logical ${formatBytes(report.totals.logicalBytes)}, read ${formatBytes(report.totals.bytesRead)}, written ${formatBytes(report.totals.bytesWritten)}`);
      }
      // A stopped run or an image the catalog did not record is a failure of the system, not of one VM's input.
      if (report.stopped || report.failures.some((failure) => failure.backupId)) return EXIT_FAILURE;
      return report.failures.length || report.problems.length ? EXIT_BAD_INPUT : EXIT_OK;
    }

    case 'backups': {
      const { values } = parse(rest, { vm: { type: 'string' }, json: { type: 'boolean' } });
      const backups = await listBackups(await getCatalog(), { vm: values.vm as string | undefined });
      if (values.json) json({ backups });
      else out(backups.length ? table([['BACKUP', 'VM', 'SOURCE', 'CREATED', 'DISKS', 'LOGICAL', 'WRITTEN'], ...backups.map((b) => [b.backupId, b.vm, b.source, b.createdAt, String(b.disks.length), formatBytes(b.logicalBytes), formatBytes(b.bytesWritten)])]) : 'no backups');
      return EXIT_OK;
    }

    case 'common-disks': {
      const { values } = parse(rest, { json: { type: 'boolean' } });
      const commonDisks = await listCommonDisks(await getCatalog());
      if (values.json) json({ commonDisks });
      else out(commonDisks.length ? table([['DISK', 'VMS', 'LOGICAL', 'STORED', 'COPIES'], ...commonDisks.map((d) => [d.path, d.vms.join(','), formatBytes(d.logicalBytes), formatBytes(d.storedBytes), String(d.copiesStored)])]) : 'no common disks');
      return EXIT_OK;
    }

    case 'stats': {
      const { values } = parse(rest, { json: { type: 'boolean' } });
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
        ['saved by common disks', formatBytes(stats.savedByCommonDisks)],
      ]));
      return EXIT_OK;
    }

    case 'restore-plan':
    case 'restore': {
      const isRestore = command === 'restore';
      const { values, positionals } = parse(rest, {
        backup: { type: 'string' }, target: { type: 'string' }, 'in-place': { type: 'boolean' }, policy: { type: 'string' }, json: { type: 'boolean' },
        ...(isRestore ? { choice: { type: 'string' }, 'confirm-drift': { type: 'boolean' } } : {}),
      }, 1);
      const request = restoreRequest(positionals[0], values);
      const sql = await getCatalogSql();
      const repo = await openRepository({ mustExist: true, sql });
      // A backup whose record a crash lost is restorable too.
      await reconcileCatalog(sql, { repo, signal, onWarning: (message) => io.stderr.write(`warning: ${message}\n`) });
      const showProgress = !values.json && io.stderr.isTTY;
      const outcome = isRestore
        ? await restoreVm(sql, repo, {
          ...request, confirmed: Boolean(values['confirm-drift']), signal,
          onProgress: showProgress ? (p) => io.stderr.write(`\r${progressLine({ done: p.bytesDone, total: p.bytesTotal, rate: 0, label: p.disk })}\x1b[K`) : undefined,
        })
        : { plan: await planVmRestore(sql, repo, request) };
      if (showProgress && outcome.result) io.stderr.write('\n');
      const { plan, result } = outcome;
      const status = result ? 'restored' : plan.status;
      const disks = plan.disks.map((d, i) => ({
        path: d.pointTo, common: d.common, action: d.action, verified: result?.disks[i]?.verified ?? false,
        written: d.files?.map((f) => f.destination) ?? [], sharedWith: d.sharedWith, sharedAtBackup: d.sharedAtBackup,
      }));
      if (values.json) {
        json({
          status, vm: plan.vm, backupId: plan.backupId, message: plan.message, cannotExecute: plan.cannotExecute,
          drift: plan.drift.map(({ disk, kind, recorded, current, sharedWith, sharedAtBackup }) => ({ disk, kind, recorded, current, sharedWith, sharedAtBackup })),
          disks, config: plan.configDestination,
        });
      } else {
        out(`${plan.vm}, backup ${plan.backupId}: ${status}`);
        out(plan.message);
        out(table([['DISK', 'COMMON', 'ACTION', 'WRITTEN TO', 'VERIFIED'], ...disks.map((d) => [d.path, d.common ? 'yes' : 'no', d.action, d.written.join(' ') || '-', d.verified ? 'yes' : '-'])]));
        out(`config: ${plan.configDestination}${result ? '' : ' (to be written)'}`);
        if (!result && isRestore && status === 'needs-confirmation') out('Nothing was written. Run again with --confirm-drift (and --choice reattach|copy) to proceed.');
      }
      return isRestore && !result ? EXIT_NEEDS_CONFIRMATION : EXIT_OK;
    }

    case 'catalog': {
      const [sub, ...args] = rest;
      if (sub !== 'rebuild') throw badInput(`unknown 'catalog' subcommand '${sub ?? ''}': use 'catalog rebuild'`);
      const { values } = parse(args, { adopt: { type: 'boolean' } });
      const { repo, location } = await openRepositoryFolder();
      const result = await rebuildCatalog(await getCatalogSql(), {
        repo, location, adopt: Boolean(values.adopt), signal,
        onSkipped: ({ id, error }) => io.stderr.write(`vmdedup: backup image ${id} skipped: ${oneLine(error)}\n`),
      });
      out(`catalog rebuilt from ${location}: ${result.backupImages} backup images, ${result.sources} sources${result.skipped.length ? `; ${result.skipped.length} unreadable images skipped` : ''}`);
      return result.skipped.length ? EXIT_FAILURE : EXIT_OK;
    }

    case 'repository': {
      const [sub, ...args] = rest;
      if (sub !== 'init') throw badInput(`unknown 'repository' subcommand '${sub ?? ''}': use 'repository init'`);
      const { values } = parse(args, { replace: { type: 'boolean' } });
      const result = await initRepository({ replace: Boolean(values.replace) });
      if (!result.created) out(`${result.location} already holds repository ${result.repo.config.id}, the one this catalog indexes`);
      else out(`created repository ${result.repo.config.id} at ${result.location}`);
      if (result.forgotten) out(`the catalog forgot ${result.forgotten.backups} backup images${result.forgotten.previous ? ` of repository ${result.forgotten.previous.repositoryId} (${result.forgotten.previous.location})` : ''}; 'vmdedup catalog rebuild --adopt' with that repository mounted brings them back`);
      return EXIT_OK;
    }

    case 'audit': {
      const [sub, ...args] = rest;
      if (sub !== 'verify') throw badInput(`unknown 'audit' subcommand '${sub ?? ''}': use 'audit verify'`);
      const { values } = parse(args, { json: { type: 'boolean' } });
      const report = await verifyAuditChain(await getCatalogSql());
      if (values.json) json(report);
      else if (report.intact) out(describeAuditChain(report));
      else io.stderr.write(`vmdedup: ${describeAuditChain(report)}\n`);
      return report.intact ? EXIT_OK : EXIT_FAILURE;
    }

    case 'db': {
      const [sub, ...args] = rest;
      if (sub === 'url') {
        const { values } = parse(args, { app: { type: 'boolean' } });
        out(values.app ? await appCatalogUrl() : await catalogUrl());
        return EXIT_OK;
      }
      if (process.env.DATABASE_URL) throw badInput('DATABASE_URL is set: the catalog is an external PostgreSQL, not the embedded one');
      if (sub === 'stop') {
        out((await stopEmbeddedCatalog(vmdedupHome())) ? 'embedded catalog stopped' : 'embedded catalog is not running');
        return EXIT_OK;
      }
      if (sub === 'status') {
        const status = await embeddedCatalogStatus(vmdedupHome());
        out(status.initialised ? `embedded catalog in ${vmdedupHome()}: ${status.running ? `running on 127.0.0.1:${status.port}` : 'stopped'}` : `no embedded catalog in ${vmdedupHome()} yet`);
        return EXIT_OK;
      }
      throw badInput(`unknown 'db' subcommand '${sub ?? ''}': use 'db status', 'db stop' or 'db url'`);
    }

    default:
      throw badInput(`unknown command '${command}' (see 'vmdedup help')`);
  }
}

type Values = Record<string, string | boolean | string[] | undefined>;

/** Parses with a zod schema; the first problem becomes a one-line bad-input error. */
function validated<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw badInput(parsed.error.issues.map((issue) => `${issue.path.join('.') || 'input'}: ${issue.message}`).join('; '));
  return parsed.data;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parse(args: string[], options: ParseArgsConfig['options'], positionalCount = 0): { values: Values; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: positionalCount > 0, strict: true });
  } catch (err) {
    throw badInput((err as Error).message.split('\n')[0]);
  }
  if (parsed.positionals.length !== positionalCount) {
    throw badInput(positionalCount ? `expected ${positionalCount} argument(s), got ${parsed.positionals.length}` : `unexpected argument '${parsed.positionals[0]}'`);
  }
  return parsed;
}

function restoreRequest(vm: string, values: Values): RestoreRequest {
  const inPlace = Boolean(values['in-place']);
  const dir = values.target as string | undefined;
  if (inPlace === Boolean(dir)) throw badInput('give exactly one of --target <dir> or --in-place');
  const policy = (values.policy as string | undefined) ?? 'no-overwrite';
  if (!RESTORE_POLICIES.includes(policy as RestorePolicy)) throw badInput(`--policy must be ${RESTORE_POLICIES.join(' or ')}, not '${policy}'`);
  const choice = (values.choice as string | undefined) ?? 'reattach';
  if (!RESTORE_CHOICES.includes(choice as RestoreChoice)) throw badInput(`--choice must be ${RESTORE_CHOICES.join(' or ')}, not '${choice}'`);
  return {
    vm, backupId: values.backup as string | undefined,
    target: inPlace ? { kind: 'in-place' } : { kind: 'folder', dir: path.resolve(dir!) },
    policy: policy as RestorePolicy, choice: choice as RestoreChoice,
  };
}

function badInput(message: string): AppError {
  return new AppError('BAD_INPUT', { message });
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ');
}

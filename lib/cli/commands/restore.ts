/** `restore-plan` and `restore`: the same request, planned only or carried out. */
import path from 'node:path';
import { type RestoreRequest, planVmRestore } from '../../services/restores/plan-vm-restore';
import { reconcileCatalog } from '../../services/backups/reconcile-catalog';
import { restoreVm } from '../../services/restores/restore-vm';
import { getCatalogSql } from '../../catalog/db';
import { RESTORE_CHOICES, RESTORE_POLICIES, type RestoreChoice, type RestorePolicy } from '../../engine/restore/plan';
import { openRepository } from '../../open-repository';
import { restoreActionWords } from '../../format';
import { type Command, type Context, type Flags, type Values, EXIT_NEEDS_CONFIRMATION, EXIT_OK, badInput, parse } from '../command';
import { progressLine, table } from '../format';

const planFlags: Flags = {
  backup: { type: 'string' }, target: { type: 'string' }, 'in-place': { type: 'boolean' }, policy: { type: 'string' }, json: { type: 'boolean' },
};
const restoreFlags: Flags = { ...planFlags, choice: { type: 'string' }, 'confirm-drift': { type: 'boolean' }, as: { type: 'string' } };

export const restorePlanCommand: Command = {
  name: 'restore-plan',
  help: `  restore-plan <vm> [--backup <id>] (--target <dir> | --in-place) [--policy no-overwrite|overwrite] [--json]
                                                          plan a restore: common disks, pointer drift; writes nothing`,
  flags: planFlags,
  run: (args, context) => planOrRestore(args, context, { isRestore: false }),
};

export const restoreCommand: Command = {
  name: 'restore',
  help: `  restore <vm> [--backup <id>] (--target <dir> | --in-place) [--policy no-overwrite|overwrite]
               [--choice reattach|copy] [--confirm-drift] [--as <new name>] [--json]
                                                          restore a VM (exit 3: drift or overwrite needs --confirm-drift);
                                                          --as: as another VM into --target, with a new name and UUID
                                                          (defined on its libvirt connection, not started)`,
  flags: restoreFlags,
  run: (args, context) => planOrRestore(args, context, { isRestore: true }),
};

async function planOrRestore(args: string[], { io, signal, out, json }: Context, { isRestore }: { isRestore: boolean }): Promise<number> {
  const { values, positionals } = parse(args, isRestore ? restoreFlags : planFlags, 1);
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
      status, vm: plan.vm, backupId: plan.backupId, ...(plan.consistency ? { consistency: plan.consistency } : {}), message: plan.message, cannotExecute: plan.cannotExecute,
      drift: plan.drift.map(({ disk, kind, recorded, current, sharedWith, sharedAtBackup }) => ({ disk, kind, recorded, current, sharedWith, sharedAtBackup })),
      disks, config: plan.configDestination,
    });
  } else {
    out(`${plan.vm}, backup ${plan.backupId}: ${status}`);
    out(plan.message);
    out(table([['DISK', 'COMMON', 'ACTION', 'WRITTEN TO', 'VERIFIED'], ...disks.map((d) => [d.path, d.common ? 'yes' : 'no', restoreActionWords(d.action), d.written.join(' ') || '-', d.verified ? 'yes' : '-'])]));
    out(`config: ${plan.configDestination}${result ? '' : ' (to be written)'}`);
    if (!result && isRestore && status === 'needs-confirmation') out('Nothing was written. Run again with --confirm-drift (and --choice reattach|copy) to proceed.');
  }
  return isRestore && !result ? EXIT_NEEDS_CONFIRMATION : EXIT_OK;
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
    ...(values.as !== undefined ? { asNew: values.as as string } : {}),
  };
}

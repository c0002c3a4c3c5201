import { restoreDirectIo } from '../../config';
import type { CatalogSql } from '../../catalog/db';
import type { Repository } from '../../engine/repository/repository';
import { type RestoreProgress, type RestoreResult, executeRestore } from '../../engine/restore/execute';
import type { RestorePlan } from '../../engine/restore/plan';
import { AppError } from '../../errors';
import { InputError } from '../../engine/errors';
import { type RestoreContext, type RestoreRequest, checkDomainShutOff, loadRestoreContext, planWithContext } from './plan-vm-restore';
import { defineDomain, domainState } from '../../engine/sources/libvirt-host';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';

export type RestoreOutcome = { plan: RestorePlan; result?: RestoreResult; changedSincePlan?: boolean };

/**
 * Restores one VM. Without `confirmed`, a plan that needs confirmation is returned unexecuted. The plan is made
 * from the live state right before writing: when the caller confirmed an earlier plan (`expectedFingerprint`)
 * and this one differs, nothing is written and the new plan is returned for confirmation.
 */
export async function restoreVm(
  sql: CatalogSql, repo: Repository,
  request: RestoreRequest & {
    confirmed: boolean;
    /** The plan the user confirmed earlier (browser requests): the restore goes ahead only if the live state still gives it. */
    expectedFingerprint?: string;
    onProgress?: (progress: RestoreProgress) => void;
    signal?: AbortSignal;
  },
): Promise<RestoreOutcome> {
  const context = await loadRestoreContext(sql, repo, request);
  // Planned once, right before writing: the executor checks every destination again as it writes.
  const plan = await planWithContext(context, request);
  if (plan.status === 'needs-confirmation' && !request.confirmed) return { plan };
  if (plan.cannotExecute) throw new AppError('BAD_INPUT', { message: plan.cannotExecute });
  if (request.expectedFingerprint && plan.fingerprint !== request.expectedFingerprint) {
    return { plan: { ...plan, status: 'needs-confirmation', message: `The live state changed while the restore was being prepared; nothing was written. ${plan.message}` }, changedSincePlan: true };
  }
  // Asked again right before writing: the domain may have been started since it was planned.
  const viaLibvirt = request.target.kind === 'in-place' ? context.uri : undefined;
  if (viaLibvirt) await checkDomainShutOff(viaLibvirt, context.image.vm.name, context.image.vm.uuid);
  const asNew = request.asNew === undefined ? undefined : await newVmIdentity(request, context);
  const result = await executeRestore({
    plan, repo, configBytes: Buffer.from(context.image.vm.configBase64, 'base64'),
    sourceType: context.sourceType, onProgress: request.onProgress, signal: request.signal,
    directIo: restoreDirectIo(),
    ...(viaLibvirt ? { defineDomain: (xml: string) => defineDomain(viaLibvirt, xml) } : {}),
    ...(asNew ? { asNew } : {}),
  });
  // The new VM is defined where the backed-up one lived, pointing at the restored files; it is not started.
  if (asNew && context.uri) {
    await defineDomain(context.uri, await fs.readFile(result.configPath, 'utf8')).catch((err: unknown) => {
      throw new InputError(`${context.image.vm.name} was restored into ${request.target.kind === 'folder' ? request.target.dir : 'its folder'} as ${asNew.name}, but libvirt did not define it (${(err as Error).message}); define it with: virsh -c ${context.uri} define ${result.configPath}`);
    });
  }
  return { plan, result };
}

/** The name (checked: not taken) and a new UUID of a VM restored as another. */
async function newVmIdentity(request: RestoreRequest, context: RestoreContext): Promise<{ name: string; uuid: string }> {
  const name = request.asNew!;
  if (context.sourceType !== 'libvirt') throw new AppError('BAD_INPUT', { message: 'restoring as a new VM is for libvirt domains only (a .vmx keeps several identities: restore to a folder and register it in vSphere)' });
  if (request.target.kind !== 'folder') throw new AppError('BAD_INPUT', { message: 'a VM restored as a new one goes into a folder: give --target <dir>' });
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/.test(name)) throw new AppError('BAD_INPUT', { message: `'${name}' is not a usable VM name: letters, digits, '.', '_', '+' or '-' (at most 100)` });
  if (context.uri && (await domainState(context.uri, name)) !== undefined) throw new AppError('CONFLICT', { message: `a domain named '${name}' already exists on ${context.uri}: choose another name` });
  return { name, uuid: randomUUID() };
}

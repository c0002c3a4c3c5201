import type { CatalogSql } from '../../catalog/db';
import { InputError } from '../../engine/errors';
import { domainState, isLive, virsh } from '../../engine/sources/libvirt-host';
import type { BackupImageManifest } from '../../engine/repository/manifests';
import type { Repository } from '../../engine/repository/repository';
import path from 'node:path';
import { isInside, resolvedRoot } from '../../engine/containment';
import { checkTargetFolder } from '../../engine/restore/target-folder';
import { type LiveState, type RestoreChoice, type RestorePlan, type RestorePolicy, type RestoreTarget, planRestore } from '../../engine/restore/plan';
import { scanSource } from '../../engine/sources/inventory';
import type { SourceType } from '../../engine/sources/types';
import { AppError } from '../../errors';
import { listSources } from '../sources/list-sources';

export type RestoreRequest = {
  vm: string;
  backupId?: string;
  target: RestoreTarget;
  policy?: RestorePolicy;
  choice?: RestoreChoice;
  /**
   * A browser restore: in place only into the folder the backup was taken from (as resolved then), never where the
   * source points now if that moved. The web server (and an admin in it) may re-point a source at any folder; in
   * place there, root would write the VM's backed-up files at that folder's paths. The CLI's operator may.
   */
  confined?: boolean;
  /** Restore as another VM, into a folder: this name and a new UUID in its config; on a libvirt connection it is
   *  defined there too (not started). */
  asNew?: string;
};

/** `uri`: the libvirt connection the image's source is read through now (in place, restored through libvirt). */
export type RestoreContext = { image: BackupImageManifest; sourceType: SourceType; uri?: string; repo: Repository; sql: CatalogSql };

/** The backup image to restore: the given id (which must belong to the VM), else the VM's latest. */
async function findImageId(sql: CatalogSql, vm: string, backupId?: string): Promise<string> {
  const { rows } = await sql.query<{ id: string; vm: string; source: string }>(
    `SELECT b."id", v."name" AS vm, s."name" AS source FROM "BackupImage" b
     JOIN "Vm" v ON v."id" = b."vmId" JOIN "Source" s ON s."id" = v."sourceId"
     WHERE ${backupId ? 'b."id" = $1' : 'v."name" = $1'} ORDER BY b."createdAt" DESC, b."id" DESC`,
    [backupId ?? vm],
  );
  if (backupId) {
    if (rows.length === 0) throw new AppError('NOT_FOUND', { message: `no backup image '${backupId}' (see 'vmdedup backups --vm ${vm}')` });
    if (rows[0].vm !== vm) throw new AppError('BAD_INPUT', { message: `backup image '${backupId}' is of VM '${rows[0].vm}', not '${vm}'` });
    return rows[0].id;
  }
  if (rows.length === 0) throw new AppError('NOT_FOUND', { message: `no backup of a VM named '${vm}' (see 'vmdedup backups')` });
  const sources = new Set(rows.map((row) => row.source));
  if (sources.size > 1) throw new AppError('BAD_INPUT', { message: `VMs named '${vm}' exist in sources ${[...sources].join(', ')}: name the backup with --backup` });
  return rows[0].id;
}

export async function loadRestoreContext(sql: CatalogSql, repo: Repository, request: RestoreRequest): Promise<RestoreContext> {
  const image = await repo.getBackupImage(await findImageId(sql, request.vm, request.backupId));
  const { rows } = await sql.query<{ type: SourceType; uri: string | null }>('SELECT "type", "uri" FROM "Source" WHERE "name" = $1', [image.source.name]);
  return { image, sourceType: rows[0]?.type ?? image.source.type, uri: rows[0]?.uri ?? undefined, repo, sql };
}

/**
 * The fleet as it is now: every registered source scanned (who uses a disk is decided on all of them). The image's
 * source is found by name, at the path the catalog has for it now; a source that cannot be read is reported, not fatal.
 */
async function liveState(sql: CatalogSql, image: BackupImageManifest, sourceType: SourceType): Promise<LiveState> {
  const sources = await listSources(sql);
  // Not in the catalog by that name (renamed since): the folders the image recorded. Never its `path` alone when it
  // had storage folders: that is the folder holding them all (perhaps /), which a scan must not walk.
  const own = sources.find((s) => s.name === image.source.name)
    ?? { name: image.source.name, type: sourceType, path: image.source.configFolder ?? image.source.path, storage: image.source.storage ?? [], uri: undefined };
  const state: LiveState = { others: [], unreadable: [] };
  for (const source of [own, ...sources.filter((s) => s.name !== own.name)]) {
    try {
      const inventory = await scanSource({ name: source.name, type: source.type, path: source.path, storage: source.storage, uri: source.uri ?? undefined });
      if (source === own) state.source = inventory;
      else state.others.push(inventory);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      state.unreadable.push({ name: source.name, error: err.message, folders: [source.path, ...(source.storage ?? [])] });
    }
  }
  return state;
}

export async function planWithContext(context: RestoreContext, request: RestoreRequest): Promise<RestorePlan> {
  // Checked when planning too, so that `restore-plan` reports it.
  if (request.target.kind === 'folder') {
    // A restored VM inside the repository would mix foreign files into it (listed, verified, swept as its own).
    const location = context.repo.store.location;
    if (path.isAbsolute(location) && isInside(await resolvedRoot(location), await resolvedRoot(request.target.dir))) {
      throw new InputError(`target folder lies inside the repository ${location}; restore to a folder outside it`, { file: request.target.dir });
    }
    await checkTargetFolder(request.target.dir, { vm: context.image.vm.name, backupId: context.image.id });
  }
  const live = await liveState(context.sql, context.image, context.sourceType);
  if (request.target.kind === 'in-place' && context.uri) await checkDomainShutOff(context.uri, context.image.vm.name, context.image.vm.uuid);
  const plan = await planRestore({ image: context.image, live, target: request.target, repo: context.repo, policy: request.policy, choice: request.choice });
  // On the plan that is executed: its root bounds every file written (the executor checks each against it).
  if (request.confined && request.target.kind === 'in-place' && plan.root !== context.image.source.path) {
    throw new AppError('FORBIDDEN', {
      message: `restores from the browser go in place only where the VM lived at the backup (${context.image.source.path}); source '${context.image.source.name}' now leads to ${plan.root}: restore into a folder, or in place with 'vmdedup restore --in-place' on the server`,
    });
  }
  return plan;
}

/** In place on a libvirt connection, the domain must be shut off (asked of libvirt): its disks are written under it,
 *  and its definition replaced through libvirt. A domain that no longer exists is defined anew. */
export async function checkDomainShutOff(uri: string, name: string, uuid: string): Promise<void> {
  const state = await domainState(uri, name);
  // A domain of that name with another UUID is another VM: libvirt would refuse to define the backed-up one over it,
  // after its disks had been written with the backed-up VM's.
  const uuidNow = state === undefined ? undefined : (await virsh(uri, ['domuuid', '--domain', name])).trim();
  if (uuidNow !== undefined && uuidNow.toLowerCase() !== uuid.toLowerCase()) {
    throw new InputError(`domain ${name} on ${uri} is another VM now (UUID ${uuidNow}, the backup's is ${uuid}): nothing was written; restore it to a folder (--target <dir>, with --as <new name> to define it as another VM), or undefine the domain that has the name now`);
  }
  if (state !== undefined && isLive(state)) {
    throw new InputError(`domain ${name} is ${state} on ${uri}: shut it off first (virsh shutdown ${name}), then restore it in place; or restore it to a folder`);
  }
}

/** Plans a restore of one VM from the catalog's backup and the live fleet; writes nothing. */
export async function planVmRestore(sql: CatalogSql, repo: Repository, request: RestoreRequest): Promise<RestorePlan> {
  return planWithContext(await loadRestoreContext(sql, repo, request), request);
}

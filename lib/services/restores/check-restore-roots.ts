import path from 'node:path';
import { restoreRoots } from '../../config';
import type { RestoreTarget } from '../../engine/restore/plan';
import { isInside, resolvedRoot } from '../../engine/containment';
import { AppError } from '../../errors';

/**
 * A browser restore into a folder goes only under a restore root (VMDEDUP_RESTORE_ROOTS, default
 * VMDEDUP_HOME/restores), checked on the paths as the filesystem resolves them: a symlink inside a root that
 * leads out of it is refused. In-place restores go where the VM is (the planner confines those).
 */
export async function checkRestoreRoots(target: RestoreTarget): Promise<void> {
  if (target.kind !== 'folder') return;
  const roots = restoreRoots();
  const given = path.resolve(target.dir);
  const refuse = (why = '') => new AppError('FORBIDDEN', { message: `restores from the browser may write only under ${roots.join(', ')} (VMDEDUP_RESTORE_ROOTS)${why}` });
  // Outside every root as written: refused without looking at the filesystem (planning probes nothing there).
  const candidates = roots.filter((root) => isInside(root, given));
  if (candidates.length === 0) throw refuse();
  const dir = await resolvedRoot(given);
  for (const root of candidates) {
    if (isInside(await resolvedRoot(root), dir)) return;
  }
  throw refuse(`; ${target.dir} leads out of them through a symlink (it resolves to ${dir})`);
}

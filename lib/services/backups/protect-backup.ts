/** Protecting a backup from prune: in the repository (a catalog rebuilt from it keeps it) and in the catalog. */
import type { CatalogSql } from '../../catalog/db';
import { setImageProtected } from '../../catalog/prune-images';
import type { Repository } from '../../engine/repository/repository';
import { AppError } from '../../errors';

export async function setBackupProtected(sql: CatalogSql, repo: Repository, id: string, value: boolean): Promise<void> {
  const { rows } = await sql.query('SELECT 1 FROM "BackupImage" WHERE "id" = $1', [id]);
  if (rows.length === 0) throw new AppError('BAD_INPUT', { message: `no backup image '${id}' (see 'vmdedup backups')` });
  // Protection is recorded in the repository first and withdrawn from it last: whatever fails between, the
  // repository never says less than the catalog (a rebuild can only protect more).
  if (value) await repo.setProtected(id, true);
  if (!(await setImageProtected(sql, id, value))) throw new AppError('BAD_INPUT', { message: `no backup image '${id}' (see 'vmdedup backups')` });
  if (!value) await repo.setProtected(id, false);
}

import type pg from 'pg';
import type { Repository } from '../engine/repository/repository';
import { AppError } from '../errors';
import { REPOSITORY_IDENTITY_LOCK } from './locks';

type Queryable = pg.Pool | pg.PoolClient;

/** The repository the catalog indexes: its config.json id, the folder it was last opened at, whether it is encrypted. */
export type RecordedRepository = { repositoryId: string; location: string; encrypted?: boolean };

export async function recordedRepository(sql: Queryable): Promise<RecordedRepository | undefined> {
  const { rows } = await sql.query<RecordedRepository>(`SELECT "repositoryId", "location", "encrypted" FROM "CatalogRepository" WHERE "slot" = 'default'`);
  return rows[0];
}

export async function recordRepository(sql: Queryable, repository: RecordedRepository): Promise<void> {
  await sql.query(
    `INSERT INTO "CatalogRepository" ("slot", "repositoryId", "location", "encrypted") VALUES ('default', $1, $2, $3)
     ON CONFLICT ("slot") DO UPDATE SET "repositoryId" = EXCLUDED."repositoryId", "location" = EXCLUDED."location",
       "recordedAt" = CASE WHEN "CatalogRepository"."repositoryId" = EXCLUDED."repositoryId" THEN "CatalogRepository"."recordedAt" ELSE now() END,
       "encrypted" = EXCLUDED."encrypted" OR ("CatalogRepository"."encrypted" AND "CatalogRepository"."repositoryId" = EXCLUDED."repositoryId")`,
    [repository.repositoryId, repository.location, repository.encrypted ?? false],
  );
}

/** Serialises the decision "which repository does this catalog index" (inside the caller's transaction). */
export async function lockRepositoryIdentity(client: pg.PoolClient): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [REPOSITORY_IDENTITY_LOCK]);
}

/** The newest backup image the catalog knows, and how many it knows (cheap: the primary key index). */
export async function catalogBackups(sql: Queryable): Promise<{ count: number; newestId?: string }> {
  const { rows: [row] } = await sql.query<{ count: string; newest: string | null }>('SELECT count(*) AS count, max("id") AS newest FROM "BackupImage"');
  return { count: Number(row.count), newestId: row.newest ?? undefined };
}

/** Refuses a repository whose id is not the recorded one: a different disk mounted, another VMDEDUP_REPOSITORY. */
export function checkSameRepository(recorded: RecordedRepository | undefined, repo: Repository, location: string): void {
  if (recorded?.encrypted && recorded.repositoryId === repo.config.id && !repo.encrypted) {
    throw new AppError('REPOSITORY', {
      message: `the repository at ${location} was encrypted, but its config.json now says it is not: refusing to open it (the next backups would be written in the clear); restore config.json from a copy`,
    });
  }
  if (!recorded || recorded.repositoryId === repo.config.id) return;
  const seen = recorded.location === location ? '' : `, last opened at ${recorded.location}`;
  throw new AppError('REPOSITORY', {
    message: `the repository at ${location} is not the one this catalog indexes (it is ${repo.config.id}; the catalog's is ${recorded.repositoryId}${seen}): `
      + "mount the right disk or set VMDEDUP_REPOSITORY; 'vmdedup catalog rebuild --adopt' makes this catalog index this repository instead",
  });
}

/** Makes the catalog index `repo` inside the caller's transaction (a rebuild): refused if it indexes another, unless `adopt`. */
export async function claimRepository(client: pg.PoolClient, options: { repo: Repository; location: string; adopt?: boolean }): Promise<void> {
  await lockRepositoryIdentity(client);
  const recorded = await recordedRepository(client);
  if (!options.adopt) checkSameRepository(recorded, options.repo, options.location);
  if (recorded?.repositoryId !== options.repo.config.id || recorded.location !== options.location || (options.repo.encrypted && !recorded.encrypted)) {
    await recordRepository(client, { repositoryId: options.repo.config.id, location: options.location, encrypted: options.repo.encrypted });
  }
}

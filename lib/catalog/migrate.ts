/**
 * Applies prisma/migrations/<name>/migration.sql in order and records each in Prisma's own
 * `_prisma_migrations` table with the same sha256 checksum, so `prisma migrate status` on a machine with
 * Prisma's schema engine sees the same history. An advisory lock serialises concurrent runners.
 * Migrations run as the catalog's owner role (lib/catalog/catalog-roles.ts); the app role only reads the table.
 */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';

const LOCK_KEY = 0x766d6464; // "vmdd"

export type MigrationResult = { applied: string[]; alreadyApplied: number };

export function defaultMigrationsDir(): string {
  return path.join(process.env.VMDEDUP_APP_DIR ?? process.cwd(), 'prisma', 'migrations');
}

type Migration = { name: string; sql: string; checksum: string };

async function readMigrations(migrationsDir: string): Promise<Migration[]> {
  const names = (await fs.readdir(/*turbopackIgnore: true*/ migrationsDir, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  return Promise.all(names.map(async (name) => {
    const sql = await fs.readFile(path.join(migrationsDir, name, 'migration.sql'), 'utf8');
    return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
  }));
}

/** Migrations not applied (or applied with other content); read-only, so the app role may ask too. */
export async function pendingMigrations(client: pg.ClientBase, migrationsDir = defaultMigrationsDir()): Promise<string[]> {
  const migrations = await readMigrations(migrationsDir);
  const current = await client.query<{ migration_name: string; checksum: string }>(
    'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE rolled_back_at IS NULL AND finished_at IS NOT NULL',
  ).catch((err) => {
    if ((err as { code?: string }).code === '42P01') return { rows: [] }; // no migration ever ran
    throw err;
  });
  const done = new Map(current.rows.map((row) => [row.migration_name, row.checksum]));
  return migrations.filter((migration) => done.get(migration.name) !== migration.checksum).map((migration) => migration.name);
}

/** Applies pending migrations; `target` is a connection URL, a pool to borrow one connection from, or a client. */
export async function migrate(target: string | pg.Pool | pg.ClientBase, migrationsDir = defaultMigrationsDir()): Promise<MigrationResult> {
  const migrations = await readMigrations(migrationsDir);
  const ownClient = typeof target === 'string' ? new pg.Client({ connectionString: target }) : undefined;
  if (ownClient) await ownClient.connect();
  const client = ownClient ?? (target instanceof pg.Pool ? await target.connect() : (target as pg.ClientBase));
  let locked = false;
  try {
    // Fast path, no lock: every migration is already applied, unchanged.
    const current = await client.query<{ migration_name: string; checksum: string }>(
      'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE rolled_back_at IS NULL AND finished_at IS NOT NULL',
    ).catch(() => undefined);
    if (current && migrations.length === current.rows.length) {
      const done = new Map(current.rows.map((row) => [row.migration_name, row.checksum]));
      if (migrations.every((migration) => done.get(migration.name) === migration.checksum)) return { applied: [], alreadyApplied: migrations.length };
    }
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    locked = true;
    await client.query(`CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
      "id" VARCHAR(36) PRIMARY KEY NOT NULL,
      "checksum" VARCHAR(64) NOT NULL,
      "finished_at" TIMESTAMPTZ,
      "migration_name" VARCHAR(255) NOT NULL,
      "logs" TEXT,
      "rolled_back_at" TIMESTAMPTZ,
      "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
      "applied_steps_count" INTEGER NOT NULL DEFAULT 0)`);
    const { rows } = await client.query<{ migration_name: string; checksum: string; finished_at: Date | null }>(
      'SELECT migration_name, checksum, finished_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL',
    );
    const done = new Map(rows.map((row) => [row.migration_name, row]));
    const applied: string[] = [];
    for (const { name, sql, checksum } of migrations) {
      const previous = done.get(name);
      if (previous) {
        if (!previous.finished_at) throw new Error(`catalog migration ${name} failed earlier and was left unfinished; restore the catalog or run 'vmdedup catalog rebuild' into a new database`);
        if (previous.checksum !== checksum) throw new Error(`catalog migration ${name} was changed after it was applied (checksum differs)`);
        continue;
      }
      const id = randomUUID();
      await client.query('BEGIN');
      try {
        await client.query('INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at) VALUES ($1, $2, $3, now())', [id, checksum, name]);
        await client.query(sql);
        await client.query('UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1', [id]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`catalog migration ${name} failed: ${(err as Error).message}`);
      }
      applied.push(name);
    }
    return { applied, alreadyApplied: migrations.length - applied.length };
  } finally {
    if (locked) await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    if (ownClient) await ownClient.end();
    else if (target instanceof pg.Pool) (client as pg.PoolClient).release();
  }
}

import pg from 'pg';
import { migrate } from './catalog/migrate';
import { vmdedupHome } from './config';
import type { PrismaClient } from './generated/prisma/client';

/** Prisma: the catalog's relational reads and single-row writes (reports, pages). */
export type Catalog = PrismaClient;
/** Plain SQL over a small pool: the set-based writes and lookups on the path of every backup run. */
export type CatalogSql = pg.Pool;

let url: Promise<string> | undefined;
let catalog: Promise<PrismaClient> | undefined;
let pool: pg.Pool | undefined;

/** DATABASE_URL when set (an external PostgreSQL), else the embedded catalog under VMDEDUP_HOME. */
export async function catalogUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  // Loaded only when needed: a web server given DATABASE_URL never carries the embedded server code.
  const { ensureEmbeddedCatalog } = await import('./catalog/embedded-postgres');
  return (await ensureEmbeddedCatalog(vmdedupHome())).url;
}

/** The catalog's URL, once per process, with every migration applied. */
function migratedUrl(): Promise<string> {
  url ??= (async () => {
    const resolved = await catalogUrl();
    await migrate(resolved);
    return resolved;
  })();
  url.catch(() => { url = undefined; });
  return url;
}

/** The one Prisma client of the process (loaded on first use: commands that do not need it start faster). */
export function getCatalog(): Promise<PrismaClient> {
  catalog ??= (async () => {
    const connectionString = await migratedUrl();
    const [{ PrismaClient }, { PrismaPg }] = await Promise.all([import('./generated/prisma/client'), import('@prisma/adapter-pg')]);
    return new PrismaClient({ adapter: new PrismaPg({ connectionString }) });
  })();
  catalog.catch(() => { catalog = undefined; });
  return catalog;
}

export async function getCatalogSql(): Promise<pg.Pool> {
  pool ??= new pg.Pool({ connectionString: await migratedUrl(), max: 4 });
  return pool;
}

/** Runs `work` in one transaction on one connection of the pool. */
export async function inTransaction<T>(sql: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await sql.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export async function closeCatalog(): Promise<void> {
  const client = catalog ? await catalog.catch(() => undefined) : undefined;
  catalog = undefined;
  url = undefined;
  const closing = pool;
  pool = undefined;
  await Promise.all([client?.$disconnect(), closing?.end()]);
}

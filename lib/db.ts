import pg from 'pg';
import { migrate } from './catalog/migrate';
import { vmdedupHome } from './config';
import type { PrismaClient } from './generated/prisma/client';

/** Prisma: the catalog's relational reads and single-row writes (reports, pages). */
export type Catalog = PrismaClient;
/** Plain SQL over a small pool: the set-based writes and lookups on the path of every backup run. */
export type CatalogSql = pg.Pool;

type Connected = { url: string; pool: pg.Pool };

let connected: Promise<Connected> | undefined;
let catalog: Promise<PrismaClient> | undefined;

/** DATABASE_URL when set (an external PostgreSQL), else the embedded catalog under VMDEDUP_HOME. */
export async function catalogUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  // Loaded only when needed: a web server given DATABASE_URL never carries the embedded server code.
  const { ensureEmbeddedCatalog } = await import('./catalog/embedded-postgres');
  return (await ensureEmbeddedCatalog(vmdedupHome())).url;
}

/** Errors that mean "the embedded server is not running" or "its database is not created yet". */
const NOT_READY = new Set(['ECONNREFUSED', '3D000', '57P03']);

async function openPool(url: string): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  // An idle connection dropped by the server (restart, `vmdedup db stop`) is not fatal: the pool reconnects.
  pool.on('error', (err) => process.stderr.write(`vmdedup: catalog connection lost (${err.message}); reconnecting on next use\n`));
  try {
    await migrate(pool);
    return pool;
  } catch (err) {
    await pool.end();
    throw err;
  }
}

/** Once per process: the catalog's URL and a pool on it, with every migration applied. */
function connect(): Promise<Connected> {
  connected ??= (async () => {
    if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, pool: await openPool(process.env.DATABASE_URL) };
    // Embedded: try the known URL first (one connection when the server runs), start it only when needed.
    const { embeddedCatalogUrl } = await import('./catalog/embedded-postgres');
    const known = await embeddedCatalogUrl(vmdedupHome());
    if (known) {
      try {
        return { url: known, pool: await openPool(known) };
      } catch (err) {
        if (!NOT_READY.has((err as { code?: string }).code ?? '')) throw err;
      }
    }
    const url = await catalogUrl();
    return { url, pool: await openPool(url) };
  })();
  connected.catch(() => { connected = undefined; });
  return connected;
}

/** The URL of the catalog in use (migrated): for libraries that open their own connections (the job queue). */
export async function getCatalogUrl(): Promise<string> {
  return (await connect()).url;
}

export async function getCatalogSql(): Promise<pg.Pool> {
  return (await connect()).pool;
}

/** The one Prisma client of the process (loaded on first use: commands that do not need it start faster). */
export function getCatalog(): Promise<PrismaClient> {
  catalog ??= (async () => {
    const { url } = await connect();
    const [{ PrismaClient }, { PrismaPg }] = await Promise.all([import('./generated/prisma/client'), import('@prisma/adapter-pg')]);
    return new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
  })();
  catalog.catch(() => { catalog = undefined; });
  return catalog;
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
  const prisma = catalog ? await catalog.catch(() => undefined) : undefined;
  const sql = connected ? await connected.catch(() => undefined) : undefined;
  catalog = undefined;
  connected = undefined;
  await Promise.all([prisma?.$disconnect(), sql?.pool.end()]);
}

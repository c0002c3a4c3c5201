import pg from 'pg';
import { vmdedupHome } from '../config';
import { RunFault } from '../engine/errors';
import type { PrismaClient } from '../generated/prisma/client';

/** Prisma: the catalog's relational reads and single-row writes (reports, pages). */
export type Catalog = PrismaClient;
/** Plain SQL over a small pool: the set-based writes and lookups on the path of every backup run. */
export type CatalogSql = pg.Pool;

/** `url`: the app role's connection, which every query of this process uses. */
type Connected = { url: string; pool: pg.Pool };

let connected: Promise<Connected> | undefined;
let catalog: Promise<PrismaClient> | undefined;

/**
 * The catalog's admin connection: DATABASE_URL when set (an external PostgreSQL; its role owns the catalog),
 * else the embedded catalog's superuser under VMDEDUP_HOME (started if needed). For psql and for processes
 * that set the catalog up (the CLI, the worker); the work itself goes through the app role (appCatalogUrl).
 */
export async function catalogUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  // Loaded only when needed: a web server given DATABASE_URL never carries the embedded server code.
  const { ensureEmbeddedCatalog } = await import('./embedded-postgres');
  return (await ensureEmbeddedCatalog(vmdedupHome())).url;
}

/** Errors that mean "the embedded server is not running" or "its database is not created yet". */
const NOT_READY = new Set(['ECONNREFUSED', '3D000', '57P03']);

/** The catalog database is unreachable or dropped the connection: every later catalog call would fail too. */
export class CatalogConnectionLost extends RunFault {
  constructor(cause: unknown) {
    super(`catalog connection lost (${(cause as Error)?.message ?? String(cause)})`, { cause });
    this.name = 'CatalogConnectionLost';
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** Whether a pg error means the connection to the catalog is gone (not that one statement failed). */
export function isConnectionLost(err: unknown): boolean {
  if (err instanceof CatalogConnectionLost) return true;
  const code = (err as { code?: string })?.code ?? '';
  // SQLSTATE class 08: connection exception; 57P01/02/03: the server shut down, crashed or is starting.
  if (CONNECTION_CODES.has(code) || code.startsWith('08') || ['57P01', '57P02', '57P03'].includes(code)) return true;
  return /Connection terminated|not queryable|Client was closed|timeout exceeded when trying to connect/i.test((err as Error)?.message ?? '');
}

/** Runs a catalog call; a lost connection becomes a CatalogConnectionLost (a RunFault: it stops a backup run). */
export async function catalogCall<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw isConnectionLost(err) ? new CatalogConnectionLost(err) : err;
  }
}

/** Who hears of an idle connection the server dropped (the pool reconnects on next use); the CLI silences it. */
let onIdleConnectionLost = (err: Error) => { process.stderr.write(`vmdedup: catalog connection lost (${err.message}); reconnecting on next use\n`); };
export function setIdleConnectionLostListener(listener: (err: Error) => void): void {
  onIdleConnectionLost = listener;
}

function openPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 4, keepAlive: true });
  // An idle connection dropped by the server (restart, `vmdedup db stop`) is not fatal: the pool reconnects.
  pool.on('error', (err) => onIdleConnectionLost(err));
  return pool;
}

/**
 * Once per process: the app role's URL and a pool on it. With an admin connection (DATABASE_URL, or the
 * embedded catalog) the catalog is first made ready as its owner: roles, migrations, grants (prepareCatalog).
 * With VMDEDUP_APP_DATABASE_URL alone (the web server, run unprivileged) nothing is changed: the catalog must
 * be migrated already, and the role must be the unprivileged app role.
 */
function connect(): Promise<Connected> {
  connected ??= (async () => {
    const { checkAppCatalog, prepareCatalog } = await import('./catalog-roles');
    const appUrl = process.env.VMDEDUP_APP_DATABASE_URL || undefined;
    if (!process.env.DATABASE_URL && appUrl) {
      await checkAppCatalog(appUrl);
      return { url: appUrl, pool: openPool(appUrl) };
    }
    if (process.env.DATABASE_URL) {
      const prepared = await prepareCatalog(process.env.DATABASE_URL, { appUrl });
      return { url: prepared.appUrl, pool: openPool(prepared.appUrl) };
    }
    // Embedded: try the known URL first (one connection when the server runs), start it only when needed.
    const { embeddedCatalogUrl } = await import('./embedded-postgres');
    const known = await embeddedCatalogUrl(vmdedupHome());
    if (known) {
      try {
        const prepared = await prepareCatalog(known, { embedded: true });
        return { url: prepared.appUrl, pool: openPool(prepared.appUrl) };
      } catch (err) {
        if (!NOT_READY.has((err as { code?: string }).code ?? '')) throw err;
      }
    }
    const prepared = await prepareCatalog(await catalogUrl(), { embedded: true });
    return { url: prepared.appUrl, pool: openPool(prepared.appUrl) };
  })();
  connected.catch(() => { connected = undefined; });
  return connected;
}

/**
 * The app role's URL, after the catalog was made ready (migrated by its owner): what to give a process that
 * should work with the app role alone, as VMDEDUP_APP_DATABASE_URL (and no DATABASE_URL).
 */
export async function appCatalogUrl(): Promise<string> {
  return (await connect()).url;
}

/** The URL of the catalog in use (the app role's): for libraries that open their own connections (the job queue). */
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
    const [{ PrismaClient }, { PrismaPg }] = await Promise.all([import('../generated/prisma/client'), import('@prisma/adapter-pg')]);
    return new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
  })();
  catalog.catch(() => { catalog = undefined; });
  return catalog;
}

/** Runs `work` in one transaction on one connection of the pool. */
export async function inTransaction<T>(sql: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await sql.connect();
  // A checked-out client has no error listener (pg-pool removes its idle one): without this, a connection lost
  // between two statements is an uncaught 'error' event that kills the process with a stack trace. The
  // statement in flight, or the next one, rejects with the cause instead.
  let lost: Error | undefined;
  const onError = (err: Error) => { lost ??= err; };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    if (!lost) await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.off('error', onError);
    if (lost) client.on('error', () => undefined); // a broken client may report again while it is torn down
    // A broken client goes back destroyed, not into the pool for the next caller.
    client.release(lost);
  }
}

/**
 * Runs `work` (a statement or a transaction that may simply run again) until PostgreSQL does not pick it as a
 * deadlock's victim, a few times at most. Recorders lock rows in key order, but statements that lock in another
 * order meet them (a scan's update of every VM's lastSeenAt, an image's touch of the VMs sharing its disks); either
 * side may be the victim, so every side retries.
 */
export async function retryingDeadlock<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if ((err as { code?: unknown }).code !== DEADLOCK_DETECTED || attempt === DEADLOCK_ATTEMPTS) throw err;
    }
  }
}

const DEADLOCK_DETECTED = '40P01';
const DEADLOCK_ATTEMPTS = 5;

export async function closeCatalog(): Promise<void> {
  const prisma = catalog ? await catalog.catch(() => undefined) : undefined;
  const sql = connected ? await connected.catch(() => undefined) : undefined;
  catalog = undefined;
  connected = undefined;
  await Promise.all([prisma?.$disconnect(), sql?.pool.end()]);
}

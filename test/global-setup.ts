/**
 * One PostgreSQL for the whole test run: Debian's or any server named by VMDEDUP_TEST_DATABASE_URL, else an
 * embedded one in a temp home (started here, stopped at the end). Test files make their own databases on it.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { ensureEmbeddedCatalog, stopEmbeddedCatalog } from '../lib/catalog/embedded-postgres';

let home: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  let url = process.env.VMDEDUP_TEST_DATABASE_URL;
  if (!url) {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'vmdedup-test-pg-'));
    await fs.chmod(home, 0o755); // the server may run as another user (postgres, when tests run as root)
    url = (await ensureEmbeddedCatalog(home)).url;
  }
  project.provide('adminDatabaseUrl', url);
}

export async function teardown(): Promise<void> {
  if (!home) return;
  await stopEmbeddedCatalog(home);
  await fs.rm(home, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

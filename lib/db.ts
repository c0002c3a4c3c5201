import { PrismaPg } from '@prisma/adapter-pg';
import { migrate } from './catalog/migrate';
import { vmdedupHome } from './config';
import { PrismaClient } from './generated/prisma/client';

export type Catalog = PrismaClient;

let catalog: Promise<PrismaClient> | undefined;

/** DATABASE_URL when set (an external PostgreSQL), else the embedded catalog under VMDEDUP_HOME. */
export async function catalogUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  // Loaded only when needed: a web server given DATABASE_URL never carries the embedded server code.
  const { ensureEmbeddedCatalog } = await import('./catalog/embedded-postgres');
  return (await ensureEmbeddedCatalog(vmdedupHome())).url;
}

/** The one Prisma client of the process, on a migrated catalog. */
export function getCatalog(): Promise<PrismaClient> {
  catalog ??= (async () => {
    const url = await catalogUrl();
    await migrate(url);
    return new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
  })();
  catalog.catch(() => { catalog = undefined; });
  return catalog;
}

export async function closeCatalog(): Promise<void> {
  if (!catalog) return;
  const client = await catalog.catch(() => undefined);
  catalog = undefined;
  await client?.$disconnect();
}

/**
 * The embedded catalog's roles: a new catalog gets its owner and app roles at first start, and a catalog made
 * by the code before roles existed (every object the superuser's, pg-boss installed by it, audit events not
 * chained) is upgraded in place on the next start, its queued jobs and audit events kept.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureEmbeddedCatalog, stopEmbeddedCatalog } from '../lib/catalog/embedded-postgres';
import { migrate } from '../lib/catalog/migrate';
import { cli, projectRoot, tempDir } from './helpers';

const homes: string[] = [];
afterAll(async () => { await Promise.all(homes.map((home) => stopEmbeddedCatalog(home).catch(() => undefined))); });

type Owned = { schema: string; owner: string };

async function owners(url: string): Promise<Owned[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<Owned>(`
      SELECT DISTINCT n.nspname AS schema, pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('public', 'pgboss', 'vmdedup_private') AND c.relkind IN ('r', 'p', 'S') ORDER BY 1, 2`);
    return rows;
  } finally {
    await client.end();
  }
}

describe('embedded catalog roles', () => {
  it('a new catalog: owner and app roles at first start; the superuser owns nothing of the catalog', async () => {
    const home = await tempDir('vmdedup-home-');
    homes.push(home);
    const env = { VMDEDUP_HOME: home, DATABASE_URL: '' };
    expect((await cli(env, 'source', 'list')).code).toBe(0);
    const adminUrl = (await cli(env, 'db', 'url')).stdout.trim();
    const appUrl = (await cli(env, 'db', 'url', '--app')).stdout.trim();
    expect(new URL(appUrl).username).toBe('vmdedup_app');
    expect(await owners(adminUrl)).toEqual([
      { schema: 'pgboss', owner: 'vmdedup_app' },
      { schema: 'public', owner: 'vmdedup_owner' },
      { schema: 'vmdedup_private', owner: 'vmdedup_owner' },
    ]);
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      const { rows } = await admin.query(`SELECT rolname, rolsuper, rolcanlogin FROM pg_roles WHERE rolname LIKE 'vmdedup%' ORDER BY rolname`);
      expect(rows).toEqual([
        { rolname: 'vmdedup', rolsuper: true, rolcanlogin: true },
        { rolname: 'vmdedup_app', rolsuper: false, rolcanlogin: true },
        { rolname: 'vmdedup_owner', rolsuper: false, rolcanlogin: false },
      ]);
      expect((await admin.query(`SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'vmdedup'`)).rows).toEqual([{ owner: 'vmdedup_owner' }]);
    } finally {
      await admin.end();
    }
    // The connection file is still the only secret on disk, and private.
    const file = path.join(home, 'catalog', 'pgdata', 'vmdedup-connection.json');
    expect((await fs.stat(file)).mode & 0o077).toBe(0);
  });

  it('a catalog made before roles existed is upgraded in place: re-owned, app role made, jobs and audit events kept and chained', async () => {
    const home = await tempDir('vmdedup-home-');
    homes.push(home);
    // The old code: everything as the superuser, migrations up to the last one before roles.
    const { url: superUrl } = await ensureEmbeddedCatalog(home);
    const oldMigrations = await tempDir('vmdedup-migrations-');
    const all = path.join(projectRoot, 'prisma', 'migrations');
    for (const name of await fs.readdir(all)) {
      if (name < '20261201100000') await fs.cp(path.join(all, name), path.join(oldMigrations, name), { recursive: true });
    }
    await migrate(superUrl, oldMigrations);
    const old = new pg.Client({ connectionString: superUrl });
    await old.connect();
    await old.query(`INSERT INTO "Source" (id, name, type, path) VALUES ('s1', 'kvm', 'libvirt', '/srv/kvm')`);
    for (const [actor, action] of [['system', 'user.create'], ['admin', 'sign-in'], ['admin', 'source.create']]) {
      await old.query('INSERT INTO "AuditEvent" (actor, action, target, detail) VALUES ($1, $2, $3, $4)', [actor, action, 'x', { note: 'before the chain' }]);
    }
    await old.end();
    const boss = new PgBoss({ connectionString: superUrl, schema: 'pgboss', max: 1, supervise: false, schedule: false });
    boss.on('error', () => undefined);
    await boss.start();
    await boss.createQueue('vmdedup-jobs');
    const queued = await boss.send('vmdedup-jobs', { jobId: 'queued-before-upgrade' });
    await boss.stop({ graceful: false, wait: true });
    expect(await owners(superUrl)).toEqual([{ schema: 'pgboss', owner: 'vmdedup' }, { schema: 'public', owner: 'vmdedup' }]);

    // The new code's first start.
    const env = { VMDEDUP_HOME: home, DATABASE_URL: '' };
    const list = await cli(env, 'source', 'list', '--json');
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).sources.map((s: { name: string }) => s.name)).toEqual(['kvm']);
    expect(await owners(superUrl)).toEqual([
      { schema: 'pgboss', owner: 'vmdedup_app' },
      { schema: 'public', owner: 'vmdedup_owner' },
      { schema: 'vmdedup_private', owner: 'vmdedup_owner' },
    ]);
    const verify = await cli(env, 'audit', 'verify');
    expect(verify, verify.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(verify.stdout).toMatch(/^audit log intact: 3 events, last [0-9a-f]{12} at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\n$/);

    const appUrl = (await cli(env, 'db', 'url', '--app')).stdout.trim();
    const app = new pg.Client({ connectionString: appUrl });
    await app.connect();
    try {
      // The job queued before the upgrade is still there for a worker (which runs as the app role).
      const { rows: jobs } = await app.query(`SELECT id, state, data FROM pgboss.job WHERE name = 'vmdedup-jobs'`);
      expect(jobs).toEqual([{ id: queued, state: 'created', data: { jobId: 'queued-before-upgrade' } }]);
      // The old events were chained in id order.
      const { rows: events } = await app.query<{ id: string; seq: string }>('SELECT id, seq FROM "AuditEvent" ORDER BY id');
      expect(events.map((e) => e.seq)).toEqual(['1', '2', '3']);
      await expect(app.query('ALTER TABLE "AuditEvent" DISABLE TRIGGER ALL')).rejects.toThrow(/must be owner/);
      await expect(app.query('SET session_replication_role = replica')).rejects.toThrow(/permission denied/);
    } finally {
      await app.end();
    }
    // Later starts find everything in place (and change nothing).
    expect((await cli(env, 'source', 'list')).code).toBe(0);
    expect((await cli(env, 'audit', 'verify')).stdout).toMatch(/^audit log intact: 3 events/);
  });
});

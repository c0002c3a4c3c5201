/**
 * The catalog's database roles on a real PostgreSQL (the embedded test server, or the external one in CI):
 * what the app role may not do to the audit trail and the schema, what it may do, that grants follow later
 * migrations and repair themselves, that a process with only the app role's URL never migrates, that a
 * non-superuser owner works, and that the CLI's backup and pg-boss run as the app role.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFleet } from '../demo/fleet';
import { cli, createTestDatabase, projectRoot, tempDir } from '../../test/helpers';
import { appRoleProblems, checkAppCatalog, prepareCatalog } from './catalog-roles';

const migrationsDir = path.join(projectRoot, 'prisma', 'migrations');

const clients: pg.Client[] = [];
async function connectAs(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}
afterAll(async () => { await Promise.all(clients.map((client) => client.end().catch(() => undefined))); });

/** `url` with another role's name and password (same server and database). */
function as(url: string, user: string, password: string): string {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = password;
  return parsed.toString();
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

describe('the catalog app role', () => {
  let adminUrl: string;
  let appUrl: string;
  let app: pg.Client;
  let admin: pg.Client;

  beforeAll(async () => {
    adminUrl = await createTestDatabase();
    const prepared = await prepareCatalog(adminUrl, { migrationsDir });
    appUrl = prepared.appUrl;
    expect(prepared.app).toMatch(/^vmdedup_app_vmdedup_test_/);
    admin = await connectAs(adminUrl);
    app = await connectAs(appUrl);
    await app.query(`INSERT INTO "AuditEvent" (actor, action, target) VALUES ('ana', 'source.create', 'kvm')`);
  });

  it('cannot switch off, rewrite or remove the audit trail, nor change the schema', async () => {
    const refused: [string, RegExp][] = [
      ['ALTER TABLE "AuditEvent" DISABLE TRIGGER ALL', /must be owner of table "?AuditEvent/],
      ['ALTER TABLE "AuditEvent" DISABLE TRIGGER "AuditEvent_chain"', /must be owner/],
      ['SET session_replication_role = replica', /permission denied to set parameter "session_replication_role"/],
      [`UPDATE "AuditEvent" SET detail = '{"forged": true}'`, /permission denied for table "?AuditEvent/],
      ['DELETE FROM "AuditEvent"', /permission denied for table "?AuditEvent/],
      ['TRUNCATE "AuditEvent"', /permission denied for table "?AuditEvent/],
      [`INSERT INTO "AuditEvent" (actor, action) VALUES ('x', 'y') ON CONFLICT (id) DO UPDATE SET actor = 'z'`, /permission denied for table "?AuditEvent/],
      ['DROP TABLE "AuditEvent"', /must be owner/],
      ['DROP TABLE "Source"', /must be owner/],
      ['ALTER TABLE "Source" ADD COLUMN "x" INT', /must be owner/],
      ['CREATE TABLE public."Forged" (id INT)', /permission denied for schema public/],
      ['CREATE TABLE "Forged" (id INT)', /permission denied for schema public/],
      ['CREATE SCHEMA forged', /permission denied for database/],
      ['CREATE FUNCTION public.forged() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', /permission denied for schema public/],
      ['CREATE TRIGGER forged BEFORE INSERT ON "Source" FOR EACH ROW EXECUTE FUNCTION audit_event_chain()', /permission denied|must be owner/],
      ['ALTER FUNCTION audit_event_chain() OWNER TO CURRENT_USER', /must be owner/],
      [`CREATE OR REPLACE FUNCTION audit_event_hash(text, bigint, timestamp, text, text, text, jsonb) RETURNS text LANGUAGE sql AS $$ SELECT '' $$`, /must be owner|permission denied/],
      ['UPDATE "_prisma_migrations" SET checksum = checksum', /permission denied for table "?_prisma_migrations/],
      ['SELECT * FROM vmdedup_private.catalog_roles', /permission denied for schema vmdedup_private/],
      ['ALTER ROLE CURRENT_USER SUPERUSER', /permission denied|must be superuser/],
      ['ALTER ROLE CURRENT_USER BYPASSRLS', /permission denied|must be superuser/],
    ];
    for (const [statement, error] of refused) {
      await expect(app.query(statement), statement).rejects.toThrow(error);
    }
    // Nothing changed: the one event is still there, as written, and the chain holds.
    const { rows } = await admin.query('SELECT actor, action, detail, seq FROM "AuditEvent" ORDER BY seq');
    expect(rows).toEqual([{ actor: 'ana', action: 'source.create', detail: {}, seq: '1' }]);
  });

  it('is no superuser, may not create databases or roles or bypass row security, and owns no catalog table', async () => {
    const { rows: [role] } = await admin.query(
      `SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolcanlogin, rolreplication FROM pg_roles WHERE rolname = $1`,
      [new URL(appUrl).username],
    );
    expect(role).toEqual({ rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolbypassrls: false, rolcanlogin: true, rolreplication: false });
    const { rows: owned } = await admin.query(
      `SELECT c.oid::regclass::text AS name FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = $1::regrole`,
      [new URL(appUrl).username],
    );
    expect(owned).toEqual([]);
    expect(await appRoleProblems(admin, new URL(appUrl).username)).toEqual([]);
  });

  it('appends and reads audit events, and does the catalog\'s work on every other table', async () => {
    const { rows: [event] } = await app.query<{ seq: string; hash: string; prevHash: string }>(
      `INSERT INTO "AuditEvent" (actor, action, target, detail, seq, "prevHash", hash) VALUES ('ana', 'user.update', 'sam', '{"role": "admin"}', 99, 'forged', 'forged') RETURNING seq, hash, "prevHash"`,
    );
    // The chain's fields are the database's, whatever the insert says.
    expect(event.seq).not.toBe('99');
    expect(event.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(event.prevHash).toMatch(/^[0-9a-f]{64}$/);
    expect((await app.query('SELECT count(*)::int AS n FROM "AuditEvent"')).rows[0].n).toBeGreaterThanOrEqual(2);
    const { rows: [source] } = await app.query<{ id: string }>(`INSERT INTO "Source" (id, name, type, path) VALUES ('s1', 'kvm', 'libvirt', '/srv/kvm') RETURNING id`);
    await app.query(`UPDATE "Source" SET path = '/srv/kvm2' WHERE id = $1`, [source.id]);
    await app.query('DELETE FROM "Source" WHERE id = $1', [source.id]);
    expect((await app.query('SELECT count(*)::int AS n FROM "_prisma_migrations"')).rows[0].n).toBeGreaterThan(0);
  });

  it('gets its grants on tables made by later migrations, and has drifted grants put right', async () => {
    const later = await tempDir('vmdedup-migrations-');
    for (const name of await fs.readdir(migrationsDir)) await fs.cp(path.join(migrationsDir, name), path.join(later, name), { recursive: true });
    await fs.mkdir(path.join(later, '29990101000000_later_table'));
    await fs.writeFile(path.join(later, '29990101000000_later_table', 'migration.sql'), 'CREATE TABLE "LaterTable" ("id" SERIAL PRIMARY KEY, "note" TEXT NOT NULL);\n');
    // Drift: someone granted the app role UPDATE on the audit log and took INSERT on sources away.
    const role = admin.escapeIdentifier(new URL(appUrl).username);
    await admin.query(`GRANT UPDATE, TRUNCATE ON "AuditEvent" TO ${role}; REVOKE INSERT ON "Source" FROM ${role}`);
    expect(await appRoleProblems(admin, new URL(appUrl).username)).toEqual(expect.arrayContaining([
      expect.stringMatching(/may UPDATE "AuditEvent"/), expect.stringMatching(/may TRUNCATE "AuditEvent"/), expect.stringMatching(/may not INSERT "Source"/),
    ]));

    const prepared = await prepareCatalog(adminUrl, { migrationsDir: later });
    expect(prepared.migrations.applied).toEqual(['29990101000000_later_table']);
    expect(prepared.appUrl).toBe(appUrl);
    await app.query(`INSERT INTO "LaterTable" (note) VALUES ('a')`);
    await app.query(`UPDATE "LaterTable" SET note = 'b'`);
    await app.query('DELETE FROM "LaterTable"');
    await expect(app.query('UPDATE "AuditEvent" SET actor = actor')).rejects.toThrow(/permission denied/);
    await expect(app.query('TRUNCATE "AuditEvent"')).rejects.toThrow(/permission denied/);
    await app.query(`INSERT INTO "Source" (id, name, type, path) VALUES ('s2', 'esx', 'vmware', '/srv/esx')`);
    expect(await appRoleProblems(admin, new URL(appUrl).username)).toEqual([]);
  });

  it('a process given only the app role\'s URL checks the catalog and never migrates', async () => {
    await checkAppCatalog(appUrl, migrationsDir);
    const pending = await tempDir('vmdedup-migrations-');
    for (const name of await fs.readdir(migrationsDir)) await fs.cp(path.join(migrationsDir, name), path.join(pending, name), { recursive: true });
    await fs.mkdir(path.join(pending, '29991231000000_pending'));
    await fs.writeFile(path.join(pending, '29991231000000_pending', 'migration.sql'), 'CREATE TABLE "Pending" ("id" INT);\n');
    await expect(checkAppCatalog(appUrl, pending)).rejects.toThrow(/the catalog is not migrated \(29991231000000_pending\)/);
    expect((await admin.query(`SELECT to_regclass('"Pending"') AS t`)).rows[0].t).toBeNull();
    // The admin's (superuser's) URL is not an app role's.
    await expect(checkAppCatalog(adminUrl, migrationsDir)).rejects.toThrow(/must connect as the catalog's unprivileged app role: .* is a superuser/);
    // And the app role's URL is no admin's: it may not set the catalog up.
    await expect(prepareCatalog(appUrl, { migrationsDir })).rejects.toThrow(/DATABASE_URL connects as 'vmdedup_app_.*', which is not this catalog's owner/);
  });

  it('the CLI given only VMDEDUP_APP_DATABASE_URL works through it, starts no embedded catalog, and refuses a superuser\'s URL', async () => {
    const home = await tempDir();
    const env = { VMDEDUP_HOME: home, DATABASE_URL: '', VMDEDUP_APP_DATABASE_URL: appUrl };
    const list = await cli(env, 'source', 'list', '--json');
    expect(list, list.stderr).toMatchObject({ code: 0, stderr: '' });
    expect((await cli(env, 'audit', 'verify')).stdout).toMatch(/^audit log intact: \d+ events/);
    expect(await fs.readdir(home)).not.toContain('catalog');
    const refused = await cli({ ...env, VMDEDUP_APP_DATABASE_URL: adminUrl }, 'source', 'list');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^vmdedup: VMDEDUP_APP_DATABASE_URL must connect as the catalog's unprivileged app role: .* is a superuser/);
  });

  it('runs pg-boss: its schema and each queue\'s table belong to the app role, jobs are sent and worked', async () => {
    const boss = new PgBoss({ connectionString: appUrl, schema: 'pgboss', max: 2, supervise: true, schedule: false });
    boss.on('error', () => undefined);
    await boss.start();
    try {
      await boss.createQueue('vmdedup-jobs');
      await boss.createQueue('another-queue'); // a new queue makes a new partition table: the app role owns pgboss
      const worked = new Promise<unknown>((resolve) => { void boss.work<{ jobId: string }>('vmdedup-jobs', { pollingIntervalSeconds: 0.5 }, async ([job]) => resolve(job.data)); });
      await boss.send('vmdedup-jobs', { jobId: 'j1' }, { retryLimit: 0, expireInHours: 23 });
      expect(await worked).toEqual({ jobId: 'j1' });
    } finally {
      await boss.stop({ graceful: false, wait: true });
    }
    const { rows } = await admin.query<{ owner: string }>(
      `SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c WHERE c.relnamespace = 'pgboss'::regnamespace AND c.relkind IN ('r', 'p')`,
    );
    expect(rows).toEqual([{ owner: new URL(appUrl).username }]);
  });
});

describe('a catalog owner that is not a superuser', () => {
  const suffix = randomBytes(4).toString('hex');
  let superUrl: string;
  let owner: string;

  beforeAll(async () => {
    superUrl = await createTestDatabase(); // only for its server: this test makes its own database and owner
    owner = `vmdedup_test_owner_${suffix}`;
    const root = await connectAs(superUrl);
    await root.query(`CREATE ROLE ${owner} LOGIN PASSWORD 'owner-pw' CREATEROLE NOSUPERUSER`);
    await root.query(`CREATE DATABASE ${owner} OWNER ${owner}`);
  });

  it('with CREATEROLE: makes the app role, hands it pg-boss, and the CLI works through it', async () => {
    const ownerUrl = as(withDatabase(superUrl, owner), owner, 'owner-pw');
    const home = await tempDir();
    const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 2, baseMiB: 2, configDiskMiB: 1, privateDiskMiB: 1, vmwareVms: 0 });
    const env = { VMDEDUP_HOME: home, DATABASE_URL: ownerUrl };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    // Which role wrote what: a column the owner adds, filled by the database with whoever inserts.
    const ownerClient = await connectAs(ownerUrl);
    await ownerClient.query('ALTER TABLE "BackupImage" ADD COLUMN "writtenBy" NAME NOT NULL DEFAULT current_user');
    const backup = await cli(env, 'backup', '--json');
    expect(backup.code, backup.stderr).toBe(0);
    const { rows: writers } = await ownerClient.query('SELECT DISTINCT "writtenBy"::text AS role FROM "BackupImage"');
    expect(writers).toEqual([{ role: `vmdedup_app_${owner}` }]);
    const { rows: tables } = await ownerClient.query(
      `SELECT DISTINCT n.nspname AS schema, pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname IN ('public', 'pgboss', 'vmdedup_private') AND c.relkind IN ('r', 'p') ORDER BY 1`,
    );
    expect(tables).toEqual([
      { schema: 'pgboss', owner: `vmdedup_app_${owner}` },
      { schema: 'public', owner },
      { schema: 'vmdedup_private', owner },
    ]);
    const appUrl = (await cli(env, 'db', 'url', '--app')).stdout.trim();
    expect(new URL(appUrl).username).toBe(`vmdedup_app_${owner}`);
    const boss = new PgBoss({ connectionString: appUrl, schema: 'pgboss', max: 1, supervise: false, schedule: false });
    boss.on('error', () => undefined);
    await boss.start();
    await boss.createQueue('vmdedup-jobs');
    expect(await boss.send('vmdedup-jobs', { jobId: 'j2' })).toBeTruthy();
    await boss.stop({ graceful: false, wait: true });
  });

  it('without CREATEROLE: says to give an app role, and works with the one given', async () => {
    const root = await connectAs(superUrl);
    const plain = `vmdedup_test_plain_${suffix}`;
    const given = `vmdedup_test_given_${suffix}`;
    await root.query(`CREATE ROLE ${plain} LOGIN PASSWORD 'plain-pw' NOSUPERUSER NOCREATEROLE`);
    await root.query(`CREATE DATABASE ${plain} OWNER ${plain}`);
    const plainUrl = as(withDatabase(superUrl, plain), plain, 'plain-pw');
    await expect(prepareCatalog(plainUrl, { migrationsDir })).rejects.toThrow(
      new RegExp(`DATABASE_URL's role '${plain}' may not create roles, so vmdedup cannot make the catalog's unprivileged app role: give it one with VMDEDUP_APP_DATABASE_URL`),
    );
    await root.query(`CREATE ROLE ${given} LOGIN PASSWORD 'given-pw' NOSUPERUSER; GRANT ${given} TO ${plain}`);
    const givenUrl = as(withDatabase(superUrl, plain), given, 'given-pw');
    const prepared = await prepareCatalog(plainUrl, { migrationsDir, appUrl: givenUrl });
    expect(prepared).toMatchObject({ owner: plain, app: given, appUrl: givenUrl });
    await checkAppCatalog(givenUrl, migrationsDir);
    const app = await connectAs(givenUrl);
    await app.query(`INSERT INTO "AuditEvent" (actor, action) VALUES ('ana', 'sign-in')`);
    await expect(app.query('DELETE FROM "AuditEvent"')).rejects.toThrow(/permission denied/);
    // Another role than the one recorded (here a superuser's) is refused.
    await expect(prepareCatalog(plainUrl, { migrationsDir, appUrl: superUrl })).rejects.toThrow(/this catalog's app role is 'vmdedup_test_given_/);
  });
});

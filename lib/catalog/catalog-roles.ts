/**
 * Who may do what in the catalog database.
 * - The **admin** connection is what vmdedup is given: the superuser initdb made (embedded catalog), or
 *   DATABASE_URL (an external PostgreSQL). It sets roles up and runs migrations, and nothing else.
 * - The **owner** role owns the catalog's schema and runs its migrations: `vmdedup_owner` (NOLOGIN; the embedded
 *   superuser becomes it with SET ROLE), or DATABASE_URL's own role.
 * - The **app** role does every process's work: SELECT/INSERT/UPDATE/DELETE on the catalog's tables, only
 *   SELECT/INSERT on the audit log and SELECT on `_prisma_migrations`; no superuser, no CREATEDB/CREATEROLE, no
 *   BYPASSRLS, no CREATE in `public`, owner of no catalog table. It owns pg-boss's schema `pgboss` and only that,
 *   because pg-boss creates a table per queue and migrates its own schema at start.
 *   `vmdedup_app` (embedded) or `vmdedup_app_<database>` (external), made with a random password; or the role of
 *   VMDEDUP_APP_DATABASE_URL when that is given.
 * The choice is recorded in the catalog itself, in `vmdedup_private.catalog_roles` (with the generated password),
 * which only the owner and superusers can read: every process and machine that reaches the catalog as its admin
 * finds the same roles, and nobody's copy of a password goes stale.
 *
 * Grants are re-applied by the owner when a check finds them off (after a migration added a table, or a new
 * app role): one statement list that also removes what the app must not have. Default privileges were not used:
 * they follow only objects created by the role they name, and would hand UPDATE/DELETE to a future append-only table.
 */
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { defaultMigrationsDir, migrate, pendingMigrations, type MigrationResult } from './migrate';

export const EMBEDDED_OWNER_ROLE = 'vmdedup_owner';
export const EMBEDDED_APP_ROLE = 'vmdedup_app';
export const JOB_QUEUE_SCHEMA = 'pgboss';
const PRIVATE_SCHEMA = 'vmdedup_private';
const ROLES_LOCK = 0x766d646f; // "vmdo": role setup, grants and the job queue's schema

/** Whether pg-boss is installed (found in the system catalogs: no privilege on its schema needed to ask). */
const JOB_QUEUE_VERSION_TABLE = `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '${JOB_QUEUE_SCHEMA}' AND c.relname = 'version'`;

/** The catalog's database roles are not as they must be, and vmdedup could not (or may not) fix them. */
export class CatalogRoleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CatalogRoleError';
  }
}

export type CatalogRoles = { owner: string; app: string; appUrl: string };

type RecordedRoles = { owner: string; app: string; password: string | null };

export type PrepareOptions = {
  /** The embedded catalog: the admin is its superuser; owner and app are vmdedup_owner and vmdedup_app. */
  embedded?: boolean;
  /** VMDEDUP_APP_DATABASE_URL beside DATABASE_URL: the app role to use instead of one vmdedup makes. */
  appUrl?: string;
  migrationsDir?: string;
};

/**
 * Makes the catalog ready for work, as its admin: the roles (made and recorded on first use, an old catalog's
 * objects re-owned), migrations as the owner, the app role's grants and pg-boss's schema. Returns the app role's URL.
 */
export async function prepareCatalog(adminUrl: string, options: PrepareOptions = {}): Promise<CatalogRoles & { migrations: MigrationResult }> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const recorded = (await readRecordedRoles(client))
      ?? (await withLock(client, async () => (await readRecordedRoles(client)) ?? setUpRoles(client, options)));
    const given = options.appUrl ? userOf(options.appUrl) : undefined;
    if (given && given !== recorded.app) {
      throw new CatalogRoleError(`VMDEDUP_APP_DATABASE_URL connects as '${given}', but this catalog's app role is '${recorded.app}' (recorded in ${PRIVATE_SCHEMA}.catalog_roles): use that role's URL, or drop the record and the old role to change it`);
    }
    const appUrl = options.appUrl ?? (recorded.password ? withCredentials(adminUrl, recorded.app, recorded.password) : undefined);
    if (!appUrl) throw new CatalogRoleError(`this catalog's app role '${recorded.app}' was given by VMDEDUP_APP_DATABASE_URL: set it again`);

    const { rows: [session] } = await client.query<{ user: string }>('SELECT current_user AS user');
    const asOwner = async <T>(work: () => Promise<T>): Promise<T> => {
      await becomeOwner(client, recorded.owner, session.user);
      let result: T;
      try {
        result = await work();
      } catch (err) {
        await client.query('RESET ROLE').catch(() => undefined); // the failure is what matters
        throw err;
      }
      await client.query('RESET ROLE');
      return result;
    };
    const migrations = await asOwner(() => migrate(client, options.migrationsDir ?? defaultMigrationsDir()));
    if (migrations.applied.length || (await appRoleProblems(client, recorded.app)).length) {
      await withLock(client, async () => {
        await asOwner(() => grantAppRole(client, recorded.app));
        // pg-boss's objects are handed to the app role by the admin, who may SET ROLE to it.
        await installJobQueueSchema(client, recorded.app).catch((err) => {
          if ((err as { code?: string }).code !== '42501') throw err;
          throw new CatalogRoleError(`DATABASE_URL's role '${session.user}' may not hand the job queue's schema to the app role '${recorded.app}' (${(err as Error).message}): make it a member (GRANT ${recorded.app} TO ${session.user})`);
        });
      });
      const problems = await appRoleProblems(client, recorded.app);
      if (problems.length) throw new CatalogRoleError(`the catalog's app role is not safe to use: ${problems.join('; ')}`);
    }
    return { owner: recorded.owner, app: recorded.app, appUrl, migrations };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * For a process given only the app role's URL (the web server run unprivileged): checks, without changing
 * anything, that the catalog is migrated and the role is the unprivileged app role. It never migrates.
 */
export async function checkAppCatalog(appUrl: string, migrationsDir = defaultMigrationsDir()): Promise<void> {
  const client = new pg.Client({ connectionString: appUrl });
  await client.connect();
  try {
    const pending = await pendingMigrations(client, migrationsDir).catch((err) => {
      if ((err as { code?: string }).code === '42501') return ['(the app role may not read _prisma_migrations)'];
      throw err;
    });
    const runWithOwner = 'run vmdedup once with the owner\'s DATABASE_URL (or the embedded catalog) to set it up';
    if (pending.length) throw new CatalogRoleError(`the catalog is not migrated (${pending.join(', ')}): ${runWithOwner}`);
    const { rows: [{ user }] } = await client.query<{ user: string }>('SELECT current_user AS user');
    const problems = await appRoleProblems(client, user);
    if (problems.length) throw new CatalogRoleError(`VMDEDUP_APP_DATABASE_URL must connect as the catalog's unprivileged app role: ${problems.join('; ')} (${runWithOwner})`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Everything about `role` that differs from the app role's rules, in words; empty when all is well. */
export async function appRoleProblems(client: pg.ClientBase, role: string): Promise<string[]> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  if (!rowCount) return [`role '${role}' does not exist`];
  const { rows } = await client.query<{ problem: string }>(`
    WITH app AS (SELECT oid, rolname FROM pg_roles WHERE rolname = $1),
    catalog AS MATERIALIZED (
      SELECT c.oid, c.relowner,
        CASE c.relname WHEN 'AuditEvent' THEN '{SELECT,INSERT}'::text[] WHEN '_prisma_migrations' THEN '{SELECT}'::text[]
          ELSE '{SELECT,INSERT,UPDATE,DELETE}'::text[] END AS wanted
      FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p'))
    SELECT format('%s is %s', r.rolname, a.what) AS problem
      FROM pg_roles r, LATERAL (VALUES (r.rolsuper, 'a superuser'), (r.rolcreatedb, 'allowed to create databases'),
        (r.rolcreaterole, 'allowed to create roles'), (r.rolbypassrls, 'allowed to bypass row security')) a(has, what)
      WHERE r.rolname = $1 AND a.has
    UNION ALL
    SELECT format('%s may act as the owner of %s', $1, c.oid::regclass) FROM catalog c, app WHERE pg_has_role(app.oid, c.relowner, 'MEMBER')
    UNION ALL
    SELECT format(CASE WHEN h.has THEN '%s may %s %s' ELSE '%s may not %s %s' END, $1, p.privilege, c.oid::regclass)
      FROM catalog c CROSS JOIN unnest('{SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER}'::text[]) p(privilege),
        LATERAL (SELECT has_table_privilege($1, c.oid, p.privilege) AS has) h
      WHERE h.has <> (p.privilege = ANY (c.wanted))
    UNION ALL
    SELECT format('%s may not use sequence %s', $1, s.oid::regclass) FROM pg_class s
      WHERE s.relnamespace = 'public'::regnamespace AND s.relkind = 'S'
        AND CASE WHEN s.relkind = 'S' THEN NOT has_sequence_privilege($1, s.oid, 'USAGE') END -- never asked of a non-sequence
    UNION ALL
    SELECT format('%s may create objects in schema public (where PUBLIC may, its owner revokes that: REVOKE CREATE ON SCHEMA public FROM PUBLIC, and grants CREATE to the catalog''s owner)', $1)
      WHERE has_schema_privilege($1, 'public', 'CREATE')
    UNION ALL
    SELECT format('%s may read schema %s', $1, n.nspname) FROM pg_namespace n
      WHERE n.nspname = '${PRIVATE_SCHEMA}' AND has_schema_privilege($1, n.oid, 'USAGE')
    UNION ALL
    SELECT 'the job queue (schema ${JOB_QUEUE_SCHEMA}) is not installed' WHERE NOT EXISTS (${JOB_QUEUE_VERSION_TABLE})
    UNION ALL
    SELECT format('%s does not own %s', $1, o.name) FROM (${jobQueueObjects()}) o, app WHERE o.owner <> app.oid
  `, [role]);
  return rows.map((row) => row.problem);
}

/** Schema `pgboss` and what is in it (tables, types, functions), with their owners. */
function jobQueueObjects(): string {
  return `
    SELECT n.oid::regnamespace::text AS name, n.nspowner AS owner, 'schema' AS kind FROM pg_namespace n WHERE n.nspname = '${JOB_QUEUE_SCHEMA}'
    UNION ALL
    SELECT c.oid::regclass::text, c.relowner, CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' ELSE 'table' END
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = '${JOB_QUEUE_SCHEMA}' AND c.relkind IN ('r', 'p', 'v', 'S')
        AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT t.oid::regtype::text, t.typowner, 'type' FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = '${JOB_QUEUE_SCHEMA}' AND t.typtype IN ('e', 'd')
    UNION ALL
    SELECT p.oid::regprocedure::text, p.proowner, 'function' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = '${JOB_QUEUE_SCHEMA}'`;
}

async function readRecordedRoles(client: pg.ClientBase): Promise<RecordedRoles | undefined> {
  try {
    const { rows } = await client.query<RecordedRoles>(`SELECT owner_role AS owner, app_role AS app, app_password AS password FROM ${PRIVATE_SCHEMA}.catalog_roles`);
    return rows[0];
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === '42P01' || code === '3F000') return undefined; // never set up
    if (code === '42501') {
      const { rows: [{ user }] } = await client.query<{ user: string }>('SELECT current_user AS user');
      throw new CatalogRoleError(`DATABASE_URL connects as '${user}', which is not this catalog's owner: DATABASE_URL must be the owner's (or a superuser's) connection; a process that should work with the app role alone gets VMDEDUP_APP_DATABASE_URL and no DATABASE_URL`);
    }
    throw err;
  }
}

/** First use of a catalog (new, or made before roles existed): makes and records its roles, in one transaction. */
async function setUpRoles(client: pg.ClientBase, options: PrepareOptions): Promise<RecordedRoles> {
  const { rows: [me] } = await client.query<{ user: string; database: string; superuser: boolean; createrole: boolean }>(`
    SELECT current_user AS user, current_database() AS database, r.rolsuper AS superuser, r.rolcreaterole AS createrole
    FROM pg_roles r WHERE r.rolname = current_user`);
  const ident = (name: string) => client.escapeIdentifier(name);
  await client.query('BEGIN');
  try {
    let roles: RecordedRoles;
    if (options.embedded) {
      if (!me.superuser) throw new CatalogRoleError(`the embedded catalog's admin '${me.user}' is not a superuser`);
      roles = { owner: EMBEDDED_OWNER_ROLE, app: EMBEDDED_APP_ROLE, password: null };
      await ensureRole(client, roles.owner, 'NOLOGIN');
      // The catalog made by the old code belongs to the superuser: hand the database (and with it schema public)
      // and every object in public to the owner.
      await client.query(`ALTER DATABASE ${ident(me.database)} OWNER TO ${ident(roles.owner)}`);
      await reownSchema(client, 'public', roles.owner);
    } else {
      roles = { owner: me.user, app: options.appUrl ? userOf(options.appUrl) : appRoleName(me.database), password: null };
    }
    if (!options.appUrl) {
      if (!me.superuser && !me.createrole) {
        throw new CatalogRoleError(`DATABASE_URL's role '${me.user}' may not create roles, so vmdedup cannot make the catalog's unprivileged app role: give it one with VMDEDUP_APP_DATABASE_URL (a LOGIN role, NOSUPERUSER, owning nothing, that '${me.user}' is a member of), or allow '${me.user}' CREATEROLE`);
      }
      roles.password = randomBytes(24).toString('base64url');
      await ensureRole(client, roles.app, `LOGIN PASSWORD ${client.escapeLiteral(roles.password)}`);
      // The owner hands pg-boss's schema to the app role, which takes being able to SET ROLE to it.
      if (!me.superuser) await client.query(`GRANT ${ident(roles.app)} TO ${ident(me.user)}`);
    }
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${PRIVATE_SCHEMA} AUTHORIZATION ${ident(roles.owner)}`);
    await client.query(`REVOKE ALL ON SCHEMA ${PRIVATE_SCHEMA} FROM PUBLIC`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${PRIVATE_SCHEMA}.catalog_roles (
      id INT PRIMARY KEY DEFAULT 1 CHECK (id = 1), owner_role TEXT NOT NULL, app_role TEXT NOT NULL, app_password TEXT)`);
    await client.query(`ALTER TABLE ${PRIVATE_SCHEMA}.catalog_roles OWNER TO ${ident(roles.owner)}`);
    await client.query(`REVOKE ALL ON ${PRIVATE_SCHEMA}.catalog_roles FROM PUBLIC`);
    await client.query(`INSERT INTO ${PRIVATE_SCHEMA}.catalog_roles (owner_role, app_role, app_password) VALUES ($1, $2, $3)
      ON CONFLICT (id) DO UPDATE SET owner_role = EXCLUDED.owner_role, app_role = EXCLUDED.app_role, app_password = EXCLUDED.app_password`,
    [roles.owner, roles.app, roles.password]);
    await client.query('COMMIT');
    return roles;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Creates the role, or brings an existing one to these attributes (a leftover of an earlier attempt or test). */
async function ensureRole(client: pg.ClientBase, role: string, attributes: string): Promise<void> {
  const safe = `NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION ${attributes}`;
  const { rowCount } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  await client.query(`${rowCount ? 'ALTER' : 'CREATE'} ROLE ${client.escapeIdentifier(role)} ${safe}`);
}

/** As the owner: exactly the app role's privileges on the catalog (in one transaction: no moment without them). */
async function grantAppRole(client: pg.ClientBase, role: string): Promise<void> {
  const app = client.escapeIdentifier(role);
  await client.query('BEGIN');
  try {
    await client.query(`
      REVOKE CREATE ON SCHEMA public FROM PUBLIC;
      GRANT USAGE ON SCHEMA public TO ${app};
      REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${app};
      REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM ${app};
      GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${app};
      REVOKE UPDATE, DELETE ON "AuditEvent" FROM ${app};
      REVOKE INSERT, UPDATE, DELETE ON "_prisma_migrations" FROM ${app};
      GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${app};`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * pg-boss creates its schema when it first starts, which takes CREATE on the database: the admin installs it
 * instead, and hands it to the app role, which then creates each queue's table in it and runs pg-boss's own
 * migrations. Queued jobs of an existing installation stay.
 */
async function installJobQueueSchema(client: pg.ClientBase, role: string): Promise<void> {
  const { rows: [{ installed }] } = await client.query<{ installed: boolean }>(`SELECT EXISTS (${JOB_QUEUE_VERSION_TABLE}) AS installed`);
  if (!installed) {
    const { default: PgBoss } = await import('pg-boss');
    // pg-boss's own plan: BEGIN, its advisory lock, CREATE SCHEMA IF NOT EXISTS and tables, COMMIT.
    await client.query(PgBoss.getConstructionPlans(JOB_QUEUE_SCHEMA));
  }
  await client.query('BEGIN');
  try {
    // The schema first: the new owner of a table must be able to create in its schema.
    await client.query(`ALTER SCHEMA ${JOB_QUEUE_SCHEMA} OWNER TO ${client.escapeIdentifier(role)}`);
    await reownSchema(client, JOB_QUEUE_SCHEMA, role);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Gives every table, view, sequence, type and function in `schema` to `role` (indexes and owned sequences follow their table). */
async function reownSchema(client: pg.ClientBase, schema: string, role: string): Promise<void> {
  const { rows } = await client.query<{ name: string; kind: string }>(`
    SELECT c.oid::regclass::text AS name, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind
      FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relowner <> $2::regrole
        AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT t.oid::regtype::text, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END FROM pg_type t
      WHERE t.typnamespace = $1::regnamespace AND t.typtype IN ('e', 'd') AND t.typowner <> $2::regrole
    UNION ALL
    SELECT p.oid::regprocedure::text, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END FROM pg_proc p
      WHERE p.pronamespace = $1::regnamespace AND p.proowner <> $2::regrole`, [schema, role]);
  for (const { name, kind } of rows) await client.query(`ALTER ${kind} ${name} OWNER TO ${client.escapeIdentifier(role)}`);
}

/** Migrations and grants run as the owner: the admin becomes it unless it is it. */
async function becomeOwner(client: pg.ClientBase, owner: string, user: string): Promise<void> {
  if (owner === user) return;
  try {
    await client.query(`SET ROLE ${client.escapeIdentifier(owner)}`);
  } catch (err) {
    throw new CatalogRoleError(`DATABASE_URL connects as '${user}', which may not act as this catalog's owner '${owner}' (${(err as Error).message}): connect as '${owner}' or a superuser`);
  }
}

async function withLock<T>(client: pg.ClientBase, work: () => Promise<T>): Promise<T> {
  await client.query('SELECT pg_advisory_lock($1)', [ROLES_LOCK]);
  try {
    return await work();
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [ROLES_LOCK]).catch(() => undefined);
  }
}

/** `vmdedup_app_<database>`: roles are shared by every database of a server, so the name says whose it is. */
export function appRoleName(database: string): string {
  const name = `vmdedup_app_${database.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
  return name.length <= 63 ? name : `${name.slice(0, 50)}_${createHash('sha256').update(database).digest('hex').slice(0, 12)}`;
}

function userOf(url: string): string {
  const parsed = new URL(url);
  return parsed.searchParams.get('user') ?? decodeURIComponent(parsed.username);
}

/** The admin's URL (host, port, database, TLS options) with another role's name and password. */
function withCredentials(adminUrl: string, user: string, password: string): string {
  const url = new URL(adminUrl);
  if (url.hostname && !url.searchParams.has('user')) {
    url.username = encodeURIComponent(user);
    url.password = encodeURIComponent(password);
  } else {
    url.searchParams.set('user', user);
    url.searchParams.set('password', password);
  }
  return url.toString();
}

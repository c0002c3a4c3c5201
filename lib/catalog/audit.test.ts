/**
 * The audit log's hash chain on a real PostgreSQL: an intact log verifies (the verifier recomputes the
 * trigger's bytes, awkward content included); each kind of tampering a superuser can do around the trigger is
 * found with the right event named; concurrent writers on several connections still make one linear chain;
 * events from before the chain are chained by the migration. Also through `vmdedup audit verify`.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, createMigratedCatalog, createTestDatabase, projectRoot, tempDir } from '../../test/helpers';
import { migrate } from './migrate';
import { describeAuditChain, verifyAuditChain } from '../services/audit/verify-audit-chain';
import { recordAudit } from './audit';

const pools: pg.Pool[] = [];
afterAll(async () => { await Promise.all(pools.map((pool) => pool.end().catch(() => undefined))); });

function poolOf(url: string, max = 2): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on('error', () => undefined);
  pools.push(pool);
  return pool;
}

/** A migrated catalog with `count` events written the usual way (Prisma), as its superuser sees it. */
async function catalogWithEvents(count: number): Promise<{ url: string; sql: pg.Pool; ids: string[] }> {
  const { url, db } = await createMigratedCatalog();
  for (let i = 1; i <= count; i++) await recordAudit(db, { actor: i % 2 ? 'ana' : 'system', action: `action.${i}`, target: `t${i}`, detail: { n: i } });
  await db.$disconnect();
  const sql = poolOf(url);
  const { rows } = await sql.query<{ id: string }>('SELECT id FROM "AuditEvent" ORDER BY seq');
  return { url, sql, ids: rows.map((row) => row.id) };
}

/** What a superuser can do: change the table with the chain's and the append-only triggers out of the way. */
async function aroundTheTriggers(sql: pg.Pool, statements: string): Promise<void> {
  const client = await sql.connect();
  try {
    await client.query(`BEGIN; SET LOCAL session_replication_role = replica; ${statements}; COMMIT`);
  } finally {
    client.release();
  }
}

describe('the audit chain', () => {
  it('an intact log verifies, whatever the events hold and however they were written', async () => {
    const { url, db } = await createMigratedCatalog();
    const sql = poolOf(url);
    expect(await verifyAuditChain(sql)).toEqual({ intact: true, events: 0 });
    await recordAudit(db, { actor: 'ana', action: 'user.update', target: 'sam "the admin"', detail: { role: 'admin', nested: { z: [1, 2.5, 1e21, -0.0, 12345678901234567890n.toString()], a: null }, 'ключ': 'значение ✓', tab: '\t\n\\' } });
    await recordAudit(db, { actor: 'system', action: 'job.failed', detail: { amount: 1.5, big: 2 ** 53 + 1, emoji: '🗝️', quote: "it's" } });
    await db.auditEvent.createMany({ data: [{ actor: 'a', action: 'x.1' }, { actor: 'b', action: 'x.2', detail: [] }, { actor: 'c', action: 'x.3', detail: 'text' }] });
    await sql.query(`INSERT INTO "AuditEvent" (actor, action, detail, at) VALUES ('raw', 'numeric', '{"b": 1.50, "a": 0.1000, "c": 1E+2}', '2026-01-02 03:04:05.678901')`);
    await db.$disconnect();
    const report = await verifyAuditChain(sql);
    const { rows: [last] } = await sql.query<{ id: string; hash: string }>('SELECT id, hash FROM "AuditEvent" ORDER BY seq DESC LIMIT 1');
    expect(report).toMatchObject({ intact: true, events: 6, last: { id: last.id, seq: '6', action: 'numeric', hash: last.hash, at: '2026-01-02T03:04:05.679Z' } });
    expect(describeAuditChain(report)).toBe(`audit log intact: 6 events, last ${last.hash.slice(0, 12)} at 2026-01-02T03:04:05.679Z`);
    // Every link: the first follows the chain's start, each later one the event before it.
    const { rows } = await sql.query<{ seq: string; prevHash: string; hash: string }>('SELECT seq, "prevHash", hash FROM "AuditEvent" ORDER BY seq');
    expect(rows.map((row) => row.seq)).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(rows[0].prevHash).toBe('0'.repeat(64));
    for (let i = 1; i < rows.length; i++) expect(rows[i].prevHash).toBe(rows[i - 1].hash);
  });

  it('finds an event whose content was rewritten', async () => {
    const { sql, ids } = await catalogWithEvents(5);
    await aroundTheTriggers(sql, `UPDATE "AuditEvent" SET detail = '{"n": 3, "approvedBy": "nobody"}' WHERE id = ${ids[2]}`);
    const report = await verifyAuditChain(sql);
    expect(report).toMatchObject({ intact: false, events: 5, broken: { id: ids[2], seq: '3', action: 'action.3', problem: 'rewritten' } });
    expect(describeAuditChain(report)).toMatch(new RegExp(`^audit log broken at event ${ids[2]} \\(#3, \\d{4}-.*Z, action\\.3\\): its content does not match its hash`));
  });

  it('finds a rewrite that recomputed the event\'s own hash: the next event no longer follows it', async () => {
    const { sql, ids } = await catalogWithEvents(5);
    await aroundTheTriggers(sql, `UPDATE "AuditEvent" SET actor = 'eve', hash = audit_event_hash("prevHash", id, at, 'eve', action, target, detail) WHERE id = ${ids[1]}`);
    expect((await verifyAuditChain(sql)).broken).toMatchObject({ id: ids[2], seq: '3', problem: 'missing', message: expect.stringMatching(/the event it follows is missing/) });
  });

  it('finds a deleted event, naming the one after the gap', async () => {
    const { sql, ids } = await catalogWithEvents(6);
    await aroundTheTriggers(sql, `DELETE FROM "AuditEvent" WHERE id = ${ids[3]}`);
    const report = await verifyAuditChain(sql);
    expect(report).toMatchObject({ intact: false, events: 5, broken: { id: ids[4], seq: '5', action: 'action.5', problem: 'missing', message: 'the event before it is missing (#4): deleted' } });
  });

  it('finds deleted events at the start of the chain', async () => {
    const { sql, ids } = await catalogWithEvents(4);
    await aroundTheTriggers(sql, `DELETE FROM "AuditEvent" WHERE id IN (${ids[0]}, ${ids[1]})`);
    expect((await verifyAuditChain(sql)).broken).toMatchObject({ id: ids[2], seq: '3', problem: 'missing', message: "the chain's start is missing (#1–#2): deleted" });
  });

  it('finds a forged event inserted around the trigger, crude or with a correct hash', async () => {
    // Crude: appended with made-up chain fields.
    const crude = await catalogWithEvents(3);
    await aroundTheTriggers(crude.sql, `INSERT INTO "AuditEvent" (id, actor, action, seq, "prevHash", hash) VALUES (1000, 'eve', 'user.create', 4, '${'0'.repeat(64)}', '${'f'.repeat(64)}')`);
    expect((await verifyAuditChain(crude.sql)).broken).toMatchObject({ id: '1000', seq: '4', action: 'user.create', problem: 'rewritten' });

    // Careful: put between events 2 and 3 with a hash computed as the trigger would, the later events moved up one.
    const careful = await catalogWithEvents(4);
    await aroundTheTriggers(careful.sql, `
      UPDATE "AuditEvent" SET seq = -seq WHERE seq >= 3;
      UPDATE "AuditEvent" SET seq = -seq + 1 WHERE seq < 0;
      INSERT INTO "AuditEvent" (id, at, actor, action, target, detail, seq, "prevHash", hash)
        SELECT 1000, now(), 'eve', 'restore.approve', 'db1', '{}', 3, e.hash, audit_event_hash(e.hash, 1000, now()::timestamp(3), 'eve', 'restore.approve', 'db1', '{}')
        FROM "AuditEvent" e WHERE e.seq = 2`);
    const report = await verifyAuditChain(careful.sql);
    expect(report).toMatchObject({ intact: false, events: 5, broken: { id: '1000', seq: '3', action: 'restore.approve', problem: 'inserted' } });
    expect(report.broken!.message).toBe(`it is not part of the chain: it was inserted between event ${careful.ids[1]} (#2) and event ${careful.ids[2]} (#4), which follows ${careful.ids[1]}`);

    // One that claims to start the chain, added at its end.
    const restart = await catalogWithEvents(2);
    await aroundTheTriggers(restart.sql, `INSERT INTO "AuditEvent" (id, at, actor, action, target, detail, seq, "prevHash", hash)
      VALUES (1000, '2026-01-01 00:00:00', 'eve', 'x', '', '{}', 3, '${'0'.repeat(64)}', audit_event_hash('${'0'.repeat(64)}', 1000, '2026-01-01 00:00:00', 'eve', 'x', '', '{}'))`);
    expect((await verifyAuditChain(restart.sql)).broken).toMatchObject({ id: '1000', problem: 'inserted', message: 'it is not part of the chain: it claims to start it, but comes after event #2' });
  });

  it('finds events whose order was changed', async () => {
    const { sql, ids } = await catalogWithEvents(5);
    await aroundTheTriggers(sql, `
      UPDATE "AuditEvent" SET seq = 0 WHERE id = ${ids[1]};
      UPDATE "AuditEvent" SET seq = 2 WHERE id = ${ids[2]};
      UPDATE "AuditEvent" SET seq = 3 WHERE id = ${ids[1]}`);
    expect((await verifyAuditChain(sql)).broken).toMatchObject({ id: ids[2], seq: '2', problem: 'reordered', message: `the order was changed: it follows event ${ids[1]} (#3), which now comes after it` });
  });

  it('concurrent writers on several connections make one linear chain', async () => {
    const { url } = await createMigratedCatalog();
    const writers = Array.from({ length: 6 }, () => poolOf(url, 3));
    await Promise.all(writers.flatMap((pool, w) => Array.from({ length: 30 }, async (_, i) => {
      if (i % 3) {
        await pool.query('INSERT INTO "AuditEvent" (actor, action, detail) VALUES ($1, $2, $3)', [`w${w}`, 'write', { i }]);
        return;
      }
      // Some in transactions that hold the chain's turn for a moment, or give it back by rolling back.
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO "AuditEvent" (actor, action, detail) VALUES ($1, $2, $3), ($1, $2, $4)', [`w${w}`, 'pair', { i }, { i, second: true }]);
        await new Promise((resolve) => setTimeout(resolve, 5));
        await client.query(i % 2 ? 'COMMIT' : 'ROLLBACK');
      } finally {
        client.release();
      }
    })));
    const sql = poolOf(url);
    const { rows: [{ n }] } = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM "AuditEvent"');
    const committedPairs = 6 * Array.from({ length: 30 }, (_, i) => i).filter((i) => i % 3 === 0 && i % 2 === 1).length;
    expect(n).toBe(6 * 20 + 2 * committedPairs);
    expect(await verifyAuditChain(sql)).toMatchObject({ intact: true, events: n, last: { seq: String(n) } });
  });

  it('a REPEATABLE READ writer that missed a newer event is refused, not forked off the chain', async () => {
    const { url } = await createMigratedCatalog();
    const sql = poolOf(url, 3);
    await sql.query(`INSERT INTO "AuditEvent" (actor, action) VALUES ('a', 'first')`);
    const stale = await sql.connect();
    try {
      await stale.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await stale.query('SELECT count(*) FROM "AuditEvent"'); // its snapshot: one event
      await sql.query(`INSERT INTO "AuditEvent" (actor, action) VALUES ('b', 'second')`);
      await expect(stale.query(`INSERT INTO "AuditEvent" (actor, action) VALUES ('c', 'stale')`)).rejects.toThrow(/AuditEvent_seq_key/);
      await stale.query('ROLLBACK');
    } finally {
      stale.release();
    }
    expect(await verifyAuditChain(sql)).toMatchObject({ intact: true, events: 2 });
  });

  it('the migration chains the events written before it, in id order', async () => {
    const url = await createTestDatabase();
    const before = await tempDir('vmdedup-migrations-');
    const all = path.join(projectRoot, 'prisma', 'migrations');
    for (const name of await fs.readdir(all)) if (name < '20261201100000') await fs.cp(path.join(all, name), path.join(before, name), { recursive: true });
    await migrate(url, before);
    const sql = poolOf(url);
    for (let i = 0; i < 5; i++) await sql.query('INSERT INTO "AuditEvent" (actor, action, detail) VALUES ($1, $2, $3)', ['old', `old.${i}`, { i, text: 'ü' }]);
    // The chain's migration and every later one.
    const later = (await fs.readdir(all)).filter((name) => name >= '20261201100000' && !name.endsWith('.toml')).sort();
    expect(later[0]).toBe('20261201100000_audit_hash_chain');
    expect((await migrate(url, all)).applied).toEqual(later);
    const { rows } = await sql.query<{ id: string; seq: string }>('SELECT id, seq FROM "AuditEvent" ORDER BY id');
    expect(rows.map((row) => row.seq)).toEqual(['1', '2', '3', '4', '5']);
    await sql.query(`INSERT INTO "AuditEvent" (actor, action) VALUES ('new', 'after')`);
    expect(await verifyAuditChain(sql)).toMatchObject({ intact: true, events: 6, last: { seq: '6', action: 'after' } });
  });
});

describe('vmdedup audit verify', () => {
  it('exit 0 and one line for an intact log; exit 1 naming the first broken event; --json', async () => {
    const { url, sql, ids } = await catalogWithEvents(3);
    const env = { VMDEDUP_HOME: await tempDir(), DATABASE_URL: url };
    const intact = await cli(env, 'audit', 'verify');
    expect(intact).toMatchObject({ code: 0, stderr: '' });
    expect(intact.stdout).toMatch(/^audit log intact: 3 events, last [0-9a-f]{12} at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\n$/);
    const json = await cli(env, 'audit', 'verify', '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ intact: true, events: 3, last: { id: ids[2], seq: '3' } });

    await aroundTheTriggers(sql, `UPDATE "AuditEvent" SET target = 'someone else' WHERE id = ${ids[1]}`);
    const broken = await cli(env, 'audit', 'verify');
    expect(broken.code).toBe(1);
    expect(broken.stdout).toBe('');
    expect(broken.stderr).toMatch(new RegExp(`^vmdedup: audit log broken at event ${ids[1]} \\(#2, [^,]+, action\\.2\\): its content does not match its hash[^\\n]*\\n$`));
    const brokenJson = await cli(env, 'audit', 'verify', '--json');
    expect(brokenJson.code).toBe(1);
    expect(JSON.parse(brokenJson.stdout)).toMatchObject({ intact: false, events: 3, broken: { id: ids[1], problem: 'rewritten' } });
    expect((await cli(env, 'audit', 'check')).code).toBe(2);
  });
});

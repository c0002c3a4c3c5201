import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../../test/helpers';
import { CatalogConnectionLost, catalogCall, inTransaction, isConnectionLost } from './db';
import { RunFault } from '../engine/errors';

describe('catalog connection lost', () => {
  const pools: pg.Pool[] = [];
  afterAll(async () => { await Promise.all(pools.map((pool) => pool.end().catch(() => undefined))); });

  it('a connection killed between two statements of a transaction rejects the transaction (no uncaught error, no stack trace)', async () => {
    const url = await createTestDatabase();
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    pool.on('error', () => undefined);
    pools.push(pool);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const work = catalogCall(() => inTransaction(pool, async (client) => {
        const { rows: [{ pid }] } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        // The server ends this session while the transaction sits between two statements (as a crash does).
        await admin.query('SELECT pg_terminate_backend($1)', [pid]);
        await new Promise((resolve) => setTimeout(resolve, 300)); // the 'error' event arrives now, with no statement in flight
        await client.query('SELECT 1');
      }));
      await expect(work).rejects.toBeInstanceOf(CatalogConnectionLost);
      await expect(work).rejects.toThrow(/^catalog connection lost \(/);
      // The broken client was not put back: the pool's next transaction works.
      expect(await inTransaction(pool, async (client) => (await client.query('SELECT 2 AS two')).rows[0].two)).toBe(2);
    } finally {
      await admin.end();
    }
  });

  it('tells a lost connection from a failed statement', async () => {
    expect(isConnectionLost(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isConnectionLost(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).toBe(true);
    expect(isConnectionLost(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionLost(Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' }))).toBe(false);
    const lost = await catalogCall(async () => { throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }); }).catch((err) => err);
    expect(lost).toBeInstanceOf(RunFault);
    const other = await catalogCall(async () => { throw new Error('syntax error'); }).catch((err) => err);
    expect(other).not.toBeInstanceOf(RunFault);
  });
});

/**
 * Audit chain benchmark: writes 100,000 audit events through the chain's trigger (one statement, and one
 * event per statement for a sample), then times `verifyAuditChain` over them (median of 3) and the Audit
 * page's query. Uses an embedded PostgreSQL in a temp folder (or VMDEDUP_BENCH_DATABASE_URL's server).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { verifyAuditChain } from '../lib/services/audit/verify-audit-chain';
import { ensureEmbeddedCatalog, stopEmbeddedCatalog } from '../lib/catalog/embedded-postgres';
import { migrate } from '../lib/catalog/migrate';

const EVENTS = Number(process.env.VMDEDUP_BENCH_AUDIT_EVENTS ?? 100_000);

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const result = await work();
  return [result, performance.now() - start];
}

const home = process.env.VMDEDUP_BENCH_DATABASE_URL ? undefined : await fs.mkdtemp(path.join(os.tmpdir(), 'vmdedup-audit-bench-'));
if (home) await fs.chmod(home, 0o755);
try {
  const adminUrl = process.env.VMDEDUP_BENCH_DATABASE_URL ?? (await ensureEmbeddedCatalog(home!)).url;
  const database = `vmdedup_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  await migrate(url.toString(), path.join(import.meta.dirname, '..', 'prisma', 'migrations'));
  const sql = new pg.Pool({ connectionString: url.toString(), max: 2 });

  const sample = 2_000;
  const [, oneByOne] = await timed(async () => {
    for (let i = 0; i < sample; i++) {
      await sql.query('INSERT INTO "AuditEvent" (actor, action, target, detail) VALUES ($1, $2, $3, $4)', ['ana', 'user.update', `u${i}`, { role: 'operator', i }]);
    }
  });
  const [, bulk] = await timed(() => sql.query(
    `INSERT INTO "AuditEvent" (actor, action, target, detail)
     SELECT 'system', 'job.finished', 'vm' || g, jsonb_build_object('jobId', md5(g::text), 'state', 'succeeded', 'bytes', g * 4096)
     FROM generate_series(1, $1) g`, [EVENTS - sample]));
  console.log(`audit chain, ${EVENTS.toLocaleString('en')} events (PostgreSQL ${(await sql.query('SHOW server_version')).rows[0].server_version}):`);
  console.log(`  write, one event a statement: ${(oneByOne / sample).toFixed(2)} ms/event (${sample} events)`);
  console.log(`  write, ${(EVENTS - sample).toLocaleString('en')} in one statement: ${(bulk / 1000).toFixed(1)} s`);

  const runs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const [report, ms] = await timed(() => verifyAuditChain(sql));
    if (!report.intact || report.events !== EVENTS) throw new Error(`unexpected report: ${JSON.stringify(report)}`);
    runs.push(ms);
  }
  console.log(`  verify (verifyAuditChain, the CLI's and the Audit page's check): median ${Math.round(runs.sort((a, b) => a - b)[1])} ms (${runs.map(Math.round).join(', ')})`);
  await sql.end();
  if (process.env.VMDEDUP_BENCH_DATABASE_URL) {
    const drop = new pg.Client({ connectionString: adminUrl });
    await drop.connect();
    await drop.query(`DROP DATABASE ${database}`);
    await drop.end();
  }
} finally {
  if (home) {
    await stopEmbeddedCatalog(home);
    await fs.rm(home, { recursive: true, force: true });
  }
}

import type pg from 'pg';

/** An event as the chain check names it: `seq` is its place in the chain (1, 2, …), `at` ISO 8601 in UTC. */
export type AuditChainEvent = { id: string; seq: string; at: string; action: string };

export type AuditChainProblem = 'rewritten' | 'missing' | 'inserted' | 'reordered';

export type AuditChainReport = {
  intact: boolean;
  /** Events in the log. */
  events: number;
  /** The end of the chain: note its hash to detect a rewrite of everything later. */
  last?: AuditChainEvent & { hash: string };
  /** The first event (in chain order) where the chain does not hold, and why. */
  broken?: AuditChainEvent & { problem: AuditChainProblem; message: string };
};

const GENESIS = '0'.repeat(64);

const ISO_AT = `to_char(e.at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * The hash as the trigger computes it, recomputed here from the stored columns alone (the same expression as
 * the migration's audit_event_hash, so the same bytes: jsonb's text form of the same values), not by calling
 * a function stored in the database.
 */
const RECOMPUTED_HASH = `encode(pg_catalog.sha256(convert_to(e."prevHash" || jsonb_build_array(e.id, to_char(e.at, 'YYYY-MM-DD"T"HH24:MI:SS.MS'), e.actor, e.action, e.target, e.detail)::text, 'UTF8')), 'hex')`;

type ChainRow = AuditChainEvent & { prevHash: string; hash: string; recomputed: string; previousHash: string | null; previousSeq: string | null };

/**
 * Walks the whole chain in the database inside one snapshot (writers append in the chain's order under its
 * lock, so a snapshot always holds a whole prefix): one scan recomputes every event's hash, one walks the
 * links in chain order; the earlier finding is the first broken event.
 */
export async function verifyAuditChain(sql: pg.Pool): Promise<AuditChainReport> {
  const client = await sql.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    type Place = { seq: string; id: string };
    const { rows: [badHash] } = await client.query<Place>(
      `SELECT e.seq::text AS seq, e.id::text AS id FROM "AuditEvent" e WHERE ${RECOMPUTED_HASH} IS DISTINCT FROM e.hash ORDER BY e.seq, e.id LIMIT 1`,
    );
    const { rows: [badLink] } = await client.query<Place>(`
      SELECT seq::text AS seq, id::text AS id FROM (
        SELECT e.seq, e.id, e."prevHash", lag(e.hash) OVER (ORDER BY e.seq, e.id) AS previous FROM "AuditEvent" e
      ) walk WHERE "prevHash" IS DISTINCT FROM coalesce(previous, $1) ORDER BY seq, id LIMIT 1`, [GENESIS]);
    const first = [badHash, badLink].filter((place): place is Place => Boolean(place))
      .sort((a, b) => Number(BigInt(a.seq) - BigInt(b.seq)) || Number(BigInt(a.id) - BigInt(b.id)))[0];
    const { rows: [{ events }] } = await client.query<{ events: number }>('SELECT count(*)::int AS events FROM "AuditEvent"');
    const { rows: [last] } = await client.query<AuditChainEvent & { hash: string }>(`
      SELECT e.id::text AS id, e.seq::text AS seq, ${ISO_AT} AS at, e.action, e.hash FROM "AuditEvent" e ORDER BY e.seq DESC, e.id DESC LIMIT 1`);
    let broken: AuditChainReport['broken'];
    if (first) {
      const { rows: [row] } = await client.query<ChainRow>(`
        SELECT e.id::text AS id, e.seq::text AS seq, ${ISO_AT} AS at, e.action, e."prevHash", e.hash, ${RECOMPUTED_HASH} AS recomputed,
          previous.hash AS "previousHash", previous.seq::text AS "previousSeq"
        FROM "AuditEvent" e LEFT JOIN LATERAL (
          SELECT p.seq, p.hash FROM "AuditEvent" p WHERE (p.seq, p.id) < (e.seq, e.id) ORDER BY p.seq DESC, p.id DESC LIMIT 1
        ) previous ON true
        WHERE e.seq = $1 AND e.id = $2`, [first.seq, first.id]);
      broken = await diagnose(client, row);
    }
    await client.query('COMMIT');
    return { intact: !broken, events, ...(last ? { last } : {}), ...(broken ? { broken } : {}) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Says what is wrong at the first event where the check fails (and, for an insertion, names the inserted one). */
async function diagnose(client: pg.PoolClient, row: ChainRow): Promise<NonNullable<AuditChainReport['broken']>> {
  const event = { id: row.id, seq: row.seq, at: row.at, action: row.action };
  if (row.recomputed !== row.hash) {
    return { ...event, problem: 'rewritten', message: row.hash ? 'its content does not match its hash: it was changed after it was written, or written around the chain' : 'it has no hash: it was written around the chain' };
  }
  // Its own hash holds, so its link does not: which event does it follow?
  const { rows: [followed] } = await client.query<AuditChainEvent>(
    `SELECT e.id::text AS id, e.seq::text AS seq, ${ISO_AT} AS at, e.action FROM "AuditEvent" e WHERE e.hash = $1 ORDER BY e.seq LIMIT 1`,
    [row.prevHash],
  );
  if (followed && BigInt(followed.seq) > BigInt(row.seq)) {
    return { ...event, problem: 'reordered', message: `the order was changed: it follows event ${followed.id} (#${followed.seq}), which now comes after it` };
  }
  if (followed && row.previousSeq !== null && BigInt(followed.seq) < BigInt(row.previousSeq)) {
    const { rows: [inserted] } = await client.query<AuditChainEvent>(
      `SELECT e.id::text AS id, e.seq::text AS seq, ${ISO_AT} AS at, e.action FROM "AuditEvent" e WHERE e.seq > $1 ORDER BY e.seq, e.id LIMIT 1`,
      [followed.seq],
    );
    return { ...inserted, problem: 'inserted', message: `it is not part of the chain: it was inserted between event ${followed.id} (#${followed.seq}) and event ${row.id} (#${row.seq}), which follows ${followed.id}` };
  }
  if (row.previousSeq === null) {
    const before = BigInt(row.seq) - 1n;
    return { ...event, problem: 'missing', message: before > 0n ? `the chain's start is missing (#1${before > 1n ? `–#${before}` : ''}): deleted` : 'the chain\'s start is missing: its previous hash is not the start\'s' };
  }
  if (row.prevHash === GENESIS) {
    return { ...event, problem: 'inserted', message: `it is not part of the chain: it claims to start it, but comes after event #${row.previousSeq}` };
  }
  const gap = BigInt(row.seq) - BigInt(row.previousSeq) - 1n;
  return {
    ...event, problem: 'missing',
    message: gap > 0n
      ? `the ${gap === 1n ? 'event' : `${gap} events`} before it ${gap === 1n ? 'is' : 'are'} missing (#${BigInt(row.previousSeq) + 1n}${gap > 1n ? `–#${BigInt(row.seq) - 1n}` : ''}): deleted`
      : 'the event it follows is missing: deleted, or replaced with one of the same place in the chain',
  };
}

/** One line for people: "audit log intact: …" or "audit log broken at event …". */
export function describeAuditChain(report: AuditChainReport): string {
  if (report.broken) {
    const { id, seq, at, action, message } = report.broken;
    return `audit log broken at event ${id} (#${seq}, ${at}, ${action}): ${message}`;
  }
  const events = `${report.events} event${report.events === 1 ? '' : 's'}`;
  return report.last ? `audit log intact: ${events}, last ${report.last.hash.slice(0, 12)} at ${report.last.at}` : `audit log intact: ${events}`;
}

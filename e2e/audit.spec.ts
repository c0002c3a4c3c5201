/**
 * The Audit page says whether the audit log's hash chain holds: intact on a fresh server; after an event is
 * rewritten behind the application's back (as the database superuser, triggers set aside) it names that event
 * in red; put back, the chain holds again.
 */
import pg from 'pg';
import { ADMIN, expect, signIn, test, vmdedup } from './fixtures';

async function asSuperuser<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: vmdedup(['db', 'url']).trim() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

test('the audit page shows the chain intact, and names a rewritten event', async ({ page }) => {
  await signIn(page, ADMIN);
  await page.goto('/audit');
  const chain = page.getByTestId('audit-chain');
  await expect(chain).toHaveAttribute('data-intact', 'true');
  await expect(chain).toHaveText(/^Chain intact: \d+ events? verified \(last hash [0-9a-f]{12}\)\.$/);

  const { id, detail } = await asSuperuser(async (client) => {
    const { rows: [event] } = await client.query<{ id: string; detail: unknown }>(`SELECT id::text AS id, detail FROM "AuditEvent" WHERE action = 'sign-in' ORDER BY seq LIMIT 1`);
    await client.query(`BEGIN; SET LOCAL session_replication_role = replica; UPDATE "AuditEvent" SET detail = '{"via": "forged"}' WHERE id = ${event.id}; COMMIT`);
    return event;
  });
  try {
    await page.reload();
    await expect(chain).toHaveAttribute('data-intact', 'false');
    await expect(chain).toContainText(`Chain broken at event ${id} (#`);
    await expect(chain).toContainText('sign-in): its content does not match its hash');
  } finally {
    await asSuperuser(async (client) => {
      await client.query('BEGIN; SET LOCAL session_replication_role = replica');
      await client.query('UPDATE "AuditEvent" SET detail = $1 WHERE id = $2', [JSON.stringify(detail), id]);
      await client.query('COMMIT');
    });
  }
  await page.reload();
  await expect(chain).toHaveAttribute('data-intact', 'true');
});

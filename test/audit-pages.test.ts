/** The audit page's query (issue 16): pages by id with no event twice or lost, filters by kind and by restore request. */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAudit } from '../lib/catalog/audit';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { listAuditPage } from '../lib/services/audit/list-audit';
import { createMigratedCatalog } from './helpers';

describe('audit pages', () => {
  let db: PrismaClient;
  const request = randomUUID();

  beforeAll(async () => {
    ({ db } = await createMigratedCatalog());
    for (let i = 0; i < 250; i++) {
      const restore = i % 25 === 0;
      await recordAudit(db, { actor: i % 2 ? 'olga' : 'april', action: restore ? 'restore.approve' : 'backup.request', target: `vm${i}`, detail: restore ? { requestId: i === 100 ? request : randomUUID() } : { jobId: `j${i}` } });
    }
  });
  afterAll(() => db?.$disconnect());

  it('walks every event once, newest first, page by page', async () => {
    const seen: string[] = [];
    let before: string | undefined;
    for (let page = 0; page < 10; page++) {
      const result = await listAuditPage(db, { limit: 100, before });
      seen.push(...result.events.map((e) => e.target));
      if (!result.older) break;
      before = result.older;
    }
    expect(seen).toHaveLength(250);
    expect(new Set(seen).size).toBe(250);
    expect(seen[0]).toBe('vm249');
    expect(seen[249]).toBe('vm0');
  });

  it('filters by kind and by restore request; a bad cursor is the first page', async () => {
    const restores = await listAuditPage(db, { action: 'restore.', limit: 100 });
    expect(restores.events.map((e) => e.target)).toEqual(['vm225', 'vm200', 'vm175', 'vm150', 'vm125', 'vm100', 'vm75', 'vm50', 'vm25', 'vm0']);
    expect(restores.older).toBeUndefined();
    expect((await listAuditPage(db, { requestId: request })).events.map((e) => e.target)).toEqual(['vm100']);
    expect((await listAuditPage(db, { before: "1'; DROP TABLE x", limit: 5 })).events[0].target).toBe('vm249');
  });
});

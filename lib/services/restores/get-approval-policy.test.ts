import { describe, expect, it } from 'vitest';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../../generated/prisma/client';
import { createMigratedCatalog } from '../../../test/helpers';
import { getApprovalPolicy } from './get-approval-policy';

describe('getApprovalPolicy', () => {
  it('first readers at once (the layout and a page of a fresh catalog) all get the one default row', async () => {
    const { url, db } = await createMigratedCatalog();
    // Readers on their own connections (web requests), started together, many times over: the race is narrow.
    const readers = Array.from({ length: 6 }, () => new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) }));
    try {
      await Promise.all(readers.map((reader) => reader.$connect()));
      const policies = await Promise.all(readers.flatMap((reader) => Array.from({ length: 4 }, () => getApprovalPolicy(reader))));
      expect(new Set(policies.map((policy) => JSON.stringify(policy))).size).toBe(1);
      expect(await db.approvalPolicy.count()).toBe(1);
    } finally {
      await Promise.all([db, ...readers].map((client) => client.$disconnect()));
    }
  });
});

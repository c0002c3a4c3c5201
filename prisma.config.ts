import { defineConfig } from 'prisma/config';

// Migrations are applied by lib/catalog/migrate.ts (the CLI's schema engine cannot be downloaded here).
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost/vmdedup' },
});

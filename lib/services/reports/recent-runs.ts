import type { CatalogSql } from '../../catalog/db';

/** A backup run as its images tell it: whatever started it (a job, the CLI, npm start's demo backup). */
export type BackupRunSummary = { runId: string; at: string; vms: number; logicalBytes: number; bytesWritten: number };

export async function recentBackupRuns(sql: CatalogSql, options: { limit?: number } = {}): Promise<BackupRunSummary[]> {
  const { rows } = await sql.query<{ run: string; at: Date; vms: string; logical: string; written: string }>(
    `SELECT coalesce("runId", "id") AS run, max("createdAt") AS at, count(*) AS vms, sum("logicalBytes") AS logical, sum("bytesWritten") AS written
     FROM "BackupImage" GROUP BY coalesce("runId", "id") ORDER BY max("createdAt") DESC LIMIT $1`,
    [options.limit ?? 5],
  );
  return rows.map((row) => ({ runId: row.run, at: row.at.toISOString(), vms: Number(row.vms), logicalBytes: Number(row.logical), bytesWritten: Number(row.written) }));
}

import type { CatalogSql } from '../../catalog/db';

/** A backup run as its images tell it: whatever started it (a job, the CLI, npm start's demo backup). */
export type BackupRunSummary = { runId: string; at: string; vms: number; logicalBytes: number; bytesRead: number; bytesWritten: number; bytesReferenced: number };

/** The last backup runs, newest first (the Overview's last results, the Savings page's runs). `at`: when it started. */
export async function recentBackupRuns(sql: CatalogSql, options: { limit?: number } = {}): Promise<BackupRunSummary[]> {
  const { rows } = await sql.query<{ run: string; at: Date; vms: string; logical: string; read: string; written: string; referenced: string }>(
    `SELECT coalesce("runId", "id") AS run, min("createdAt") AS at, count(DISTINCT "vmId") AS vms, sum("logicalBytes") AS logical,
       sum("bytesRead") AS read, sum("bytesWritten") AS written, sum("bytesReferenced") AS referenced
     FROM "BackupImage" GROUP BY coalesce("runId", "id") ORDER BY at DESC LIMIT $1`,
    [options.limit ?? 5],
  );
  return rows.map((row) => ({
    runId: row.run, at: row.at.toISOString(), vms: Number(row.vms), logicalBytes: Number(row.logical), bytesRead: Number(row.read),
    bytesWritten: Number(row.written), bytesReferenced: Number(row.referenced),
  }));
}

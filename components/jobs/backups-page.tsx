import type { BackupsPageData } from '@/lib/services/backups/load-backups-page';
import { formatBytes } from '@/lib/format';
import { BackupNow } from './backup-now';
import { JobList } from './job-list';
import { LocalTime } from '@/components/ui/local-time';

export function BackupsPage({ data, canBackUp }: { data: BackupsPageData; canBackUp: boolean }) {
  return (
    <div className="space-y-8">
      <h1 className="text-2xl font-semibold">Backups &amp; jobs</h1>
      {canBackUp && <BackupNow targets={data.targets} />}
      <JobList initialJobs={data.jobs} />
      <section aria-labelledby="images-heading">
        <h2 id="images-heading" className="mb-3 text-lg font-semibold">Backup images</h2>
        {data.backups.length === 0 ? (
          <p className="text-slate-500">No backups yet.</p>
        ) : (
          <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
            <thead className="bg-slate-100 text-left text-slate-600">
              <tr><th className="px-3 py-2">When</th><th className="px-3 py-2">VM</th><th className="px-3 py-2">Source</th><th className="px-3 py-2 text-right">Logical</th><th className="px-3 py-2 text-right">Read</th><th className="px-3 py-2 text-right">Written</th><th className="px-3 py-2 text-right">Referenced</th><th className="px-3 py-2">Backup id</th></tr>
            </thead>
            <tbody>
              {data.backups.map((b) => (
                <tr key={b.backupId} className="border-t border-slate-100">
                  <td className="px-3 py-2"><LocalTime iso={b.createdAt} /></td>
                  <td className="px-3 py-2">{b.vm}</td>
                  <td className="px-3 py-2">{b.source}</td>
                  <td className="px-3 py-2 text-right">{formatBytes(b.logicalBytes)}</td>
                  <td className="px-3 py-2 text-right">{formatBytes(b.bytesRead)}</td>
                  <td className="px-3 py-2 text-right">{formatBytes(b.bytesWritten)}</td>
                  <td className="px-3 py-2 text-right">{formatBytes(b.bytesReferenced)}</td>
                  <td className="px-3 py-2 font-mono text-xs">{b.backupId}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}

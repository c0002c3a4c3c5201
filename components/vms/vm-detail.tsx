import Link from 'next/link';
import type { VmView } from '@/lib/services/reports/get-vm';
import { formatBytes } from '@/lib/format';
import { vmHref } from './vm-href';
import { LocalTime } from '@/components/ui/local-time';
import { BackUpVm } from './back-up-vm';

export function VmDetail({ vm, canRestore, canBackUp }: { vm: VmView; canRestore: boolean; canBackUp: boolean }) {
  return (
    <div className="space-y-8">
      <div>
        <div className="flex items-center gap-4">
          <h1 className="text-2xl font-semibold">{vm.name}</h1>
          {canBackUp && <BackUpVm source={vm.source} vm={vm.name} />}
          {canRestore && vm.backups.length > 0 && (
            <Link href={`/restores/new?${new URLSearchParams({ source: vm.source, vm: vm.name })}`} className="rounded bg-slate-900 px-3 py-1.5 text-sm text-white">Restore…</Link>
          )}
        </div>
        <p className="text-sm text-slate-600">source {vm.source}{vm.configPath && <> · config <span className="font-mono text-xs">{vm.configPath}</span></>}{vm.uuid && <> · uuid {vm.uuid}</>}</p>
      </div>
      <section aria-labelledby="disks-heading">
        <h2 id="disks-heading" className="mb-3 text-lg font-semibold">Disks and pointers</h2>
        <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
          <thead className="bg-slate-100 text-left text-slate-600">
            <tr><th className="px-3 py-2">Slot</th><th className="px-3 py-2">Disk</th><th className="px-3 py-2">Format</th><th className="px-3 py-2 text-right">Size</th><th className="px-3 py-2">Parent chain</th><th className="px-3 py-2">Common with</th></tr>
          </thead>
          <tbody>
            {vm.disks.map((disk) => (
              <tr key={disk.path} className="border-t border-slate-100" aria-label={`disk ${disk.path}`}>
                <td className="px-3 py-2">{disk.via === 'attached' ? disk.slot : <span className="text-slate-500">{disk.via === 'parent' ? 'parent image' : 'shared'}</span>}</td>
                <td className="px-3 py-2 font-mono text-xs">{disk.path}</td>
                <td className="px-3 py-2">{disk.format}</td>
                <td className="px-3 py-2 text-right">{formatBytes(disk.sizeBytes)}</td>
                <td className="px-3 py-2 font-mono text-xs">{disk.chain.length ? disk.chain.map((p) => `→ ${p.split('/').pop()}`).join(' ') : ''}</td>
                <td className="px-3 py-2">
                  {disk.common
                    ? <span className="rounded bg-violet-100 px-2 py-0.5 text-xs text-violet-800">common</span>
                    : <span className="text-slate-400">private</span>}
                  {disk.common && <span className="ml-2">{disk.usedBy.filter((n) => n !== vm.name).map((n, i) => <span key={n}>{i > 0 && ', '}<Link href={vmHref({ source: vm.source, name: n })} className="text-blue-700 hover:underline">{n}</Link></span>)}</span>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section aria-labelledby="vm-backups-heading">
        <h2 id="vm-backups-heading" className="mb-3 text-lg font-semibold">Backup images</h2>
        {vm.backups.length === 0 ? <p className="text-slate-500">Not backed up yet.</p> : (
          <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
            <thead className="bg-slate-100 text-left text-slate-600">
              <tr><th className="px-3 py-2">When</th><th className="px-3 py-2">Backup id</th><th className="px-3 py-2 text-right">Logical</th><th className="px-3 py-2 text-right">Written</th><th className="px-3 py-2 text-right">Referenced</th><th className="px-3 py-2">Disks</th><th className="px-3 py-2">Consistency</th></tr>
            </thead>
            <tbody>
              {vm.backups.map((b) => (
                <tr key={b.backupId} className="border-t border-slate-100">
                  <td className="px-3 py-2"><LocalTime iso={b.createdAt} /></td>
                  <td className="px-3 py-2 font-mono text-xs">{b.backupId}</td>
                  <td className="px-3 py-2 text-right">{formatBytes(b.logicalBytes)}</td>
                  <td className="px-3 py-2 text-right">{formatBytes(b.bytesWritten)}</td>
                  <td className="px-3 py-2 text-right">{formatBytes(b.bytesReferenced)}</td>
                  <td className="px-3 py-2">{b.disks.length} ({b.disks.filter((d) => d.common).length} common)</td>
                  <td className="px-3 py-2" data-testid="backup-consistency" title={b.consistency ? CONSISTENCY[b.consistency] : 'a folder source cannot tell whether the VM was running'}>{b.consistency ?? 'not known'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}

/** What each consistency means, in the words an administrator checks a backup by. */
const CONSISTENCY: Record<string, string> = {
  application: 'the guest agent froze the file systems: as after a clean shutdown',
  crash: 'every disk at one point in time, as after a power cut',
  offline: 'the VM was shut off',
};

import type { Catalog } from '../../catalog/db';
import type { SourceProblem } from '../../catalog/record-inventory';

export type SourceView = {
  id: string; name: string; type: string; path: string; storage: string[]; uri: string | null; scannedAt: string | null;
  vms: number; vmsProtected: number; problems: SourceProblem[];
};

export async function listSourceViews(db: Catalog): Promise<SourceView[]> {
  const sources = await db.source.findMany({
    orderBy: { name: 'asc' },
    include: { vms: { select: { _count: { select: { backups: true } } } } },
  });
  return sources.map((s) => ({
    id: s.id, name: s.name, type: s.type, path: s.path, storage: (s.storage as string[]) ?? [], uri: s.uri, scannedAt: s.scannedAt?.toISOString() ?? null,
    vms: s.vms.length, vmsProtected: s.vms.filter((vm) => vm._count.backups > 0).length, problems: s.problems as SourceProblem[],
  }));
}

import type pg from 'pg';
import type { BackupImageManifest } from '../../engine/repository/manifests';
import type { Repository } from '../../engine/repository/repository';
import type { ImageRecord, SkippedImage } from '../../catalog/record-backup-image';

/** Manifests read at once: enough to hide file latency, few enough that memory stays bounded by the batch. */
const READ_CONCURRENCY = 16;

/**
 * Reads backup-image manifests for the catalog; one that cannot be read, parsed or indexed (a field the
 * catalog records is missing or of the wrong type, or it names another id than its file) is skipped and
 * reported, never fatal: one damaged manifest must not keep the others out of the catalog.
 */
export async function readBackupImages(repo: Repository, ids: string[]): Promise<{ images: BackupImageManifest[]; skipped: SkippedImage[] }> {
  const images: BackupImageManifest[] = [];
  const skipped: SkippedImage[] = [];
  for (let start = 0; start < ids.length; start += READ_CONCURRENCY) {
    const read = await Promise.all(ids.slice(start, start + READ_CONCURRENCY).map(async (id) => {
      try {
        const image = await repo.getBackupImage(id);
        const problem = imageProblem(image, id);
        return problem ? { id, error: problem } : image;
      } catch (err) {
        return { id, error: (err as Error).message };
      }
    }));
    for (const result of read) {
      if ('error' in result) skipped.push(result);
      else images.push(result);
    }
  }
  return { images, skipped };
}

/**
 * The catalog's source id for each image's source, by name; a source named only by backups (a catalog
 * rebuilt, or a record lost after its source was removed) is created from the image. DO NOTHING, not an
 * upsert: it locks no existing source row (a scan may be updating it while a rebuild waits on that scan).
 */
export async function withSourceIds(
  client: pg.PoolClient | pg.Pool, images: BackupImageManifest[], known = new Map<string, string>(), created?: Map<string, SourceLayout>,
): Promise<ImageRecord[]> {
  const missing = [...new Map(images.filter((image) => !known.has(image.source.name)).map((image) => [image.source.name, image.source])).values()];
  if (missing.length > 0) {
    // A source with storage folders: its config folder and storage folders as recorded (its `path` is then only the
    // folder holding them all, perhaps /, which must never become a folder that a scan walks).
    const { rows: inserted } = await client.query<{ name: string }>(
      `INSERT INTO "Source" ("id", "name", "type", "path", "storage", "uri")
       SELECT gen_random_uuid()::text, s.name, s.type, s.path, s.storage::jsonb, s.uri FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS s(name, type, path, storage, uri)
       ON CONFLICT ("name") DO NOTHING RETURNING "name"`,
      [missing.map((s) => s.name), missing.map((s) => s.type), missing.map((s) => layoutOf(s).path), missing.map((s) => JSON.stringify(layoutOf(s).storage)), missing.map((s) => layoutOf(s).uri)],
    );
    for (const row of inserted) created?.set(row.name, { path: '', storage: [], uri: null });
    const { rows } = await client.query<{ id: string; name: string }>('SELECT "id", "name" FROM "Source" WHERE "name" = ANY($1::text[])', [missing.map((s) => s.name)]);
    for (const row of rows) known.set(row.name, row.id);
  }
  // Images come oldest first: a source created here ends with the folders of its newest image (see SourceLayout).
  if (created) for (const image of images) if (created.has(image.source.name)) created.set(image.source.name, layoutOf(image.source));
  return images.map((image) => ({ sourceId: known.get(image.source.name)!, image }));
}

/** A source's folders as an image recorded them: those of a source created from the images are its newest image's
 *  (an older one may predate a storage folder, or a datastore that moved); the caller sets them once all are read. */
export type SourceLayout = { path: string; storage: string[]; uri: string | null };

function layoutOf(source: BackupImageManifest['source']): SourceLayout {
  // A libvirt connection's source comes back as one: read as a folder, its running domains would be read torn.
  return { path: source.configFolder ?? source.path, storage: source.storage ?? [], uri: source.uri ?? null };
}

/** What makes a parsed manifest unusable for the catalog, in one line; undefined when it is fine. */
function imageProblem(image: unknown, id: string): string | undefined {
  const m = image as BackupImageManifest;
  if (!isObject(m)) return 'not a backup image manifest';
  if (m.id !== id) return `names backup ${JSON.stringify(m.id)} but is stored as ${id}`;
  if (typeof m.createdAt !== 'string' || Number.isNaN(Date.parse(m.createdAt))) return 'createdAt is not a date';
  if (!isObject(m.source) || !isText(m.source.name) || !isText(m.source.type) || !isText(m.source.path)) return 'source is incomplete';
  if (!isObject(m.vm) || !isText(m.vm.name) || typeof m.vm.uuid !== 'string' || typeof m.vm.configPath !== 'string') return 'vm is incomplete';
  if (!isObject(m.totals) || !['logicalBytes', 'bytesRead', 'bytesWritten', 'bytesReferenced'].every((k) => isCount((m.totals as Record<string, unknown>)[k]))) return 'totals are incomplete';
  if (!Array.isArray(m.disks)) return 'disks is not a list';
  for (const [index, d] of m.disks.entries()) {
    const ok = isObject(d) && isText(d.identifier) && isText(d.path) && isText(d.format) && isText(d.versionToken) && isText(d.digest)
      && (d.via === 'attached' || d.via === 'parent') && (d.action === 'stored' || d.action === 'referenced') && typeof d.common === 'boolean'
      && Array.isArray(d.usedBy) && d.usedBy.every(isText) && isCount(d.logicalBytes) && isCount(d.bytesRead) && isCount(d.bytesWritten)
      && (d.slot === undefined || typeof d.slot === 'string') && (d.target === undefined || typeof d.target === 'string')
      && (d.parent === undefined || (isObject(d.parent) && typeof d.parent.pointer === 'string' && typeof d.parent.path === 'string' && typeof d.parent.versionToken === 'string'));
    if (!ok) return `disk ${index + 1} is incomplete`;
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isText(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

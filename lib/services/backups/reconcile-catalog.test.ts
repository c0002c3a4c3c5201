import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bareImage, bareImagePack, createMigratedCatalog, tempDir } from '../../../test/helpers';
import { forgetImages } from '../../catalog/prune-images';
import { recordBackupImageBatch } from '../../catalog/record-backup-image';
import { packedImageId } from '../../engine/repository/image-pack';
import { FsBlobStore } from '../../engine/repository/fs-blob-store';
import { imageBlobOf } from '../../engine/repository/image-pack';
import { Repository } from '../../engine/repository/repository';
import { reconcileCatalog } from './reconcile-catalog';

describe('reconcile compares blobs of images/, not every image', () => {
  let sql: pg.Pool;
  let repo: Repository;
  const ids = async () => (await sql.query<{ id: string }>('SELECT "id" FROM "BackupImage" ORDER BY "id"')).rows.map((row) => row.id);
  // The repository, with a count of the blobs whose images reconcile had to look at.
  const looked: string[] = [];
  const watched = () => ({
    ...repo,
    backupImageBlobs: async () => {
      const listing = await repo.backupImageBlobs();
      return { ...listing, imagesOf: (blob: string) => { looked.push(blob); return listing.imagesOf(blob); } };
    },
    getBackupImage: (id: string) => repo.getBackupImage(id),
    hasBackupImage: (id: string) => repo.hasBackupImage(id),
  }) as unknown as Repository;

  beforeAll(async () => {
    const catalog = await createMigratedCatalog();
    await catalog.db.$disconnect();
    sql = new pg.Pool({ connectionString: catalog.url, max: 3 });
    repo = await Repository.openOrInit(new FsBlobStore(await tempDir()));
    await sql.query(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ('s1', 'pool', 'libvirt', '/src')`);
  });
  afterAll(async () => sql?.end());

  it('looks only at blobs not recorded whole, and finds every image the catalog lacks', async () => {
    // A backup's packs, recorded whole as it records them; one pack written and never recorded (a killed run); an
    // image stored alone (format 2).
    const recorded = bareImagePack(5, new Date(Date.UTC(2026, 10, 1)));
    const killed = bareImagePack(3, new Date(Date.UTC(2026, 10, 2)));
    const alone = bareImage('20261103T000000Z-aaaaaa', 'solo');
    await repo.putBackupImages(recorded);
    await repo.putBackupImages(killed);
    await repo.putBackupImages([alone]);
    const packOf = (image: { id: string }) => imageBlobOf(image.id);
    await recordBackupImageBatch(sql, recorded.map((image) => ({ sourceId: 's1', image })), { wholeBlob: packOf(recorded[0]) });

    const first = await reconcileCatalog(sql, { repo: watched() });
    expect(first.recorded.sort()).toEqual([...killed.map((i) => i.id), alone.id].sort());
    expect([...new Set(looked)].sort()).toEqual([packOf(killed[0]), alone.id].sort());
    expect(await ids()).toEqual([...recorded, ...killed, alone].map((i) => i.id).sort());
    // Now every blob is recorded whole: the next reconcile looks at none.
    looked.length = 0;
    expect((await reconcileCatalog(sql, { repo: watched() })).recorded).toEqual([]);
    expect(looked).toEqual([]);
  });

  it('a record lost with its blob marked is found all the same (the counts differ)', async () => {
    const [lost] = await ids();
    await sql.query('DELETE FROM "BackupImage" WHERE "id" = $1', [lost]);
    expect((await reconcileCatalog(sql, { repo })).recorded).toEqual([lost]);
  });

  it('a prune killed between forgetting images and removing them: the next reconcile records them again', async () => {
    const [first, second] = await ids();
    await expect(forgetImages(sql, [first, second], async () => { throw new Error('killed'); })).rejects.toThrow('killed');
    expect(await ids()).not.toContain(first);
    // Their pack is no longer marked recorded whole: it is looked at again, whatever the counts say.
    const marked = (await sql.query<{ id: string }>('SELECT "id" FROM "RecordedImageBlob"')).rows.map((row) => row.id);
    expect(marked).not.toContain(imageBlobOf(first));
    expect((await reconcileCatalog(sql, { repo: watched() })).recorded.sort()).toEqual([first, second].sort());
  });

  it('an image stored alone whose id is also a pack\'s id (both are a time and 6 random digits): both blobs are looked at', async () => {
    const id = '20261105T000000Z-bbbbbb';
    const alone = bareImage(id, 'old-format');
    const pack = [0, 1].map((index) => bareImage(packedImageId(id, index), `vm${index}`));
    await repo.putBackupImages([alone]);
    await repo.putBackupImages(pack);
    await recordBackupImageBatch(sql, pack.map((image) => ({ sourceId: 's1', image })), { wholeBlob: id });
    expect((await reconcileCatalog(sql, { repo })).recorded).toEqual([id]);
    expect(await ids()).toContain(id);
    expect((await reconcileCatalog(sql, { repo })).recorded).toEqual([]);
  });
});

import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemuImg, tempDir } from '../../../test/helpers';
import { readQcow2Header } from './qcow2';
import { readVmdkDescriptor } from './vmdk';

async function withFile<T>(file: string, read: (fh: fs.FileHandle) => Promise<T>): Promise<T> {
  const fh = await fs.open(file, 'r');
  try {
    return await read(fh);
  } finally {
    await fh.close();
  }
}

describe('qcow2 header', () => {
  it.each(['0.10', '1.1'])('reads version and backing file of compat=%s images made by qemu-img', async (compat) => {
    const dir = await tempDir();
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, path.join(dir, 'base.qcow2'), '4M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, '-b', 'base.qcow2', '-F', 'qcow2', path.join(dir, 'child.qcow2'));
    const base = await withFile(path.join(dir, 'base.qcow2'), (fh) => readQcow2Header(fh, 'base'));
    const child = await withFile(path.join(dir, 'child.qcow2'), (fh) => readQcow2Header(fh, 'child'));
    expect(base).toMatchObject({ version: compat === '0.10' ? 2 : 3, virtualSize: 4 * 1024 * 1024, backingFile: undefined });
    expect(child).toMatchObject({ backingFile: 'base.qcow2', backingFormat: 'qcow2' });
  });
});

describe('VMDK descriptor', () => {
  it.each([
    ['monolithicSparse', true, 1],
    ['monolithicFlat', false, 1],
    ['twoGbMaxExtentFlat', false, 1],
    ['twoGbMaxExtentSparse', false, 1],
  ])('reads %s made by qemu-img', async (subformat, embedded, extents) => {
    const dir = await tempDir();
    const file = path.join(dir, 'disk.vmdk');
    await qemuImg('create', '-q', '-f', 'vmdk', '-o', `subformat=${subformat}`, file, '3M');
    const descriptor = await withFile(file, (fh) => readVmdkDescriptor(fh, file));
    expect(descriptor.createType).toBe(subformat);
    expect(descriptor.embedded).toBe(embedded);
    expect(descriptor.extents).toHaveLength(extents);
    expect(descriptor.cid).toMatch(/^[0-9a-f]{8}$/);
    expect(descriptor.parentCid).toBe('ffffffff');
    if (!embedded) {
      for (const extent of descriptor.extents) await expect(fs.access(path.join(dir, extent.file!))).resolves.toBeUndefined();
    }
  });

  it('reads the parent link of a linked clone', async () => {
    const dir = await tempDir();
    await qemuImg('create', '-q', '-f', 'vmdk', path.join(dir, 'base.vmdk'), '2M');
    await qemuImg('create', '-q', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', path.join(dir, 'child.vmdk'));
    const base = await withFile(path.join(dir, 'base.vmdk'), (fh) => readVmdkDescriptor(fh, 'base'));
    const child = await withFile(path.join(dir, 'child.vmdk'), (fh) => readVmdkDescriptor(fh, 'child'));
    expect(child.parentFileNameHint).toBe('base.vmdk');
    expect(child.parentCid).toBe(base.cid);
  });

  it('reads ddb.uuid and ddb.longContentID and refuses garbage', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'd.vmdk');
    await fs.writeFile(file, '# Disk DescriptorFile\nversion=1\nCID=0a1b2c3d\nparentCID=ffffffff\ncreateType="vmfs"\nRW 2048 VMFS "d-flat.vmdk"\nddb.uuid = "60 00 C2 91 aa"\nddb.longContentID = "abc123"\n');
    const descriptor = await withFile(file, (fh) => readVmdkDescriptor(fh, file));
    expect(descriptor).toMatchObject({ ddbUuid: '60 00 C2 91 aa', longContentId: 'abc123', extents: [{ type: 'VMFS', file: 'd-flat.vmdk', sectors: 2048 }] });
    await fs.writeFile(file, Buffer.concat([Buffer.from('garbage'), Buffer.alloc(10), Buffer.from('x')]));
    await expect(withFile(file, (fh) => readVmdkDescriptor(fh, file))).rejects.toThrow(/binary data/);
  });
});

describe('VMDK CID', () => {
  it('accepts CIDs written without leading zeros and normalises them', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'd.vmdk');
    await fs.writeFile(file, '# Disk DescriptorFile\nversion=1\nCID=bf985ef\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "d-flat.vmdk" 0\n');
    const descriptor = await withFile(file, (fh) => readVmdkDescriptor(fh, file));
    expect(descriptor.cid).toBe('0bf985ef');
  });
});

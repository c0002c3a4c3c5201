import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemuImg, tempDir } from '../../../test/helpers';
import { detectDiskFormat } from './detect';
import { readQcow2Header, setQcow2BackingFile } from './qcow2';
import { readVmdkDescriptor, setVmdkParent } from './vmdk';

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

  it('refuses a backing file name cut short by a truncation after the stat, or holding NUL bytes, in one line naming the image', async () => {
    const dir = await tempDir();
    const child = path.join(dir, 'child.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'some-base.qcow2', '-F', 'qcow2', child, '1M');
    const bytes = await fs.readFile(child);
    const nameAt = Number(bytes.readBigUInt64BE(8));
    // The stat still gives the old size; the file now ends four bytes into the name (a writer truncated it meanwhile).
    const truncated = bytes.subarray(0, nameAt + 4);
    const staleStat = {
      stat: async () => ({ size: bytes.length }),
      read: async (buffer: Buffer, offset: number, length: number, position: number) => ({ bytesRead: truncated.copy(buffer, offset, position, Math.min(truncated.length, position + length)) }),
    };
    await expect(readQcow2Header(staleStat, child)).rejects.toThrow(new RegExp(`^${child}: truncated qcow2 backing file name$`));
    const withNul = Buffer.from(bytes);
    withNul.fill(0, nameAt + 4, nameAt + 6);
    await fs.writeFile(child, withNul);
    await expect(withFile(child, (fh) => readQcow2Header(fh, child))).rejects.toThrow(new RegExp(`^${child}: corrupt qcow2 backing file name$`));
  });
});

describe('VMDK descriptor', () => {
  it.each([['monolithicFlat', 'header'], ['monolithicSparse', 'embedded descriptor']])('refuses a %s VMDK cut short after the stat (its %s: a descriptor file is read in its first sector), never parses what is left', async (subformat, what) => {
    const dir = await tempDir();
    const file = path.join(dir, 'disk.vmdk');
    await qemuImg('create', '-q', '-f', 'vmdk', '-o', `subformat=${subformat}`, file, '3M');
    const bytes = await fs.readFile(file);
    // The stat still gives the old size; the file now ends inside the descriptor (its extent line cut off).
    const descriptorAt = subformat === 'monolithicSparse' ? Number(bytes.readBigUInt64LE(28)) * 512 : 0;
    const truncated = bytes.subarray(0, descriptorAt + 40);
    const staleStat = {
      stat: async () => ({ size: bytes.length }),
      read: async (buffer: Buffer, offset: number, length: number, position: number) => ({ bytesRead: Math.max(0, truncated.copy(buffer, offset, Math.min(position, truncated.length), Math.min(truncated.length, position + length))) }),
    };
    await expect(readVmdkDescriptor(staleStat, file)).rejects.toThrow(new RegExp(`^${file}: truncated VMDK ${what} `));
  });

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
    await fs.writeFile(file, Buffer.concat([Buffer.from('# garbage\x01\x02'), Buffer.alloc(10), Buffer.from('x')]));
    await expect(withFile(file, (fh) => readVmdkDescriptor(fh, file))).rejects.toThrow(/binary data/);
    await fs.writeFile(file, Buffer.concat([Buffer.from('# garbage\n'), Buffer.alloc(10), Buffer.from('x')]));
    await expect(withFile(file, (fh) => readVmdkDescriptor(fh, file))).rejects.toThrow(/no valid CID/);
  });

  it('reads a descriptor with stale bytes after its NUL, as qemu-img leaves when it rewrites the CID shorter', async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, 'd.raw'), Buffer.alloc(65536, 7));
    const file = path.join(dir, 'd.vmdk');
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', path.join(dir, 'd.raw'), file);
    // What qemu's CID update does about 1 time in 200: over a descriptor with an 8-digit CID it writes the text
    // with a 6-digit CID and its NUL; the old text's last byte stays behind the NUL (seen as "\n\0\n\0…").
    const original = await fs.readFile(file);
    const text = original.toString('latin1', 0, original.indexOf(0)).replace(/^CID=[0-9a-f]+$/m, 'CID=9a8b7c6d');
    const shorter = text.replace(/^CID=[0-9a-f]+$/m, 'CID=1a2b3c');
    expect(shorter.length).toBe(text.length - 2);
    const stale = Buffer.alloc(original.length);
    stale.write(text, 0, 'latin1');
    stale.write(`${shorter}\0`, 0, 'latin1');
    await fs.writeFile(file, stale);
    expect(stale.indexOf(0)).toBe(shorter.length);
    expect(stale.toString('latin1', shorter.length, text.length)).toBe('\0\n');
    // qemu reads it as a valid image, and so do we.
    expect(JSON.parse(await qemuImg('info', '--output=json', file))).toMatchObject({ format: 'vmdk', 'virtual-size': 65536 });
    const descriptor = await withFile(file, (fh) => readVmdkDescriptor(fh, file));
    expect(descriptor).toMatchObject({ cid: '001a2b3c', createType: 'monolithicFlat', extents: [{ type: 'FLAT', file: 'd-flat.vmdk', sectors: 128 }] });
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

/** `qemu-img info --backing-chain` of an image: one entry per image, the image first. */
async function backingChain(file: string): Promise<Array<Record<string, unknown> & { filename: string }>> {
  return JSON.parse(await qemuImg('info', '--output=json', '--backing-chain', file));
}

describe('qcow2 backing file rewrite', () => {
  it.each(['0.10', '1.1'])('points a compat=%s child at another parent, longer and shorter names, as qemu-img reads it', async (compat) => {
    const dir = await tempDir();
    await fs.mkdir(path.join(dir, 'elsewhere'));
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, path.join(dir, 'base.qcow2'), '4M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, path.join(dir, 'elsewhere', 'a-much-longer-parent-name.qcow2'), '4M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, path.join(dir, 'b.qcow2'), '4M');
    const child = path.join(dir, 'child.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, '-b', 'base.qcow2', '-F', 'qcow2', child);

    for (const pointer of ['elsewhere/a-much-longer-parent-name.qcow2', 'b.qcow2']) {
      await setQcow2BackingFile(child, pointer);
      const [image, parent, ...rest] = await backingChain(child);
      expect(image).toMatchObject({ 'backing-filename': pointer, 'backing-filename-format': 'qcow2' });
      expect(parent.filename).toBe(path.join(dir, pointer));
      expect(rest).toHaveLength(0);
      await qemuImg('check', '-q', child);
      const header = await withFile(child, (fh) => readQcow2Header(fh, child));
      expect(header).toMatchObject({ backingFile: pointer, backingFormat: 'qcow2' });
    }
  });

  it('refuses a name that does not fit in the header cluster and leaves the image as it was', async () => {
    const dir = await tempDir();
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(dir, 'base.qcow2'), '1M');
    const child = path.join(dir, 'child.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', 'base.qcow2', '-F', 'qcow2', child);
    const before = await fs.readFile(child);
    await expect(setQcow2BackingFile(child, `${'x'.repeat(600)}.qcow2`)).rejects.toThrow(/no room in the qcow2 header/);
    expect((await fs.readFile(child)).equals(before)).toBe(true);
  });
});

describe('VMDK parent rewrite', () => {
  it.each([
    ['monolithicSparse', true],
    ['twoGbMaxExtentSparse', false],
  ])('points a %s child at another parent (hint and parentCID), as qemu-img reads it', async (subformat, embedded) => {
    const dir = await tempDir();
    await fs.mkdir(path.join(dir, 'gold'));
    await qemuImg('create', '-q', '-f', 'vmdk', path.join(dir, 'base.vmdk'), '2M');
    await qemuImg('create', '-q', '-f', 'vmdk', path.join(dir, 'gold', 'golden-parent.vmdk'), '2M');
    const child = path.join(dir, 'child.vmdk');
    await qemuImg('create', '-q', '-f', 'vmdk', '-o', `subformat=${subformat}`, '-b', 'base.vmdk', '-F', 'vmdk', child);
    const gold = await withFile(path.join(dir, 'gold', 'golden-parent.vmdk'), (fh) => readVmdkDescriptor(fh, 'gold'));

    await setVmdkParent(child, { hint: 'gold/golden-parent.vmdk', cid: gold.cid });
    const [image, parent, ...rest] = await backingChain(child);
    expect(image).toMatchObject({
      'backing-filename': 'gold/golden-parent.vmdk',
      'format-specific': { data: { 'parent-cid': parseInt(gold.cid, 16), 'create-type': subformat } },
    });
    expect(parent.filename).toBe(path.join(dir, 'gold', 'golden-parent.vmdk'));
    expect(rest).toHaveLength(0);
    await qemuImg('check', '-q', child);
    const descriptor = await withFile(child, (fh) => readVmdkDescriptor(fh, child));
    expect(descriptor).toMatchObject({ parentFileNameHint: 'gold/golden-parent.vmdk', parentCid: gold.cid, embedded, createType: subformat });
  });

  it('adds parentFileNameHint to a descriptor that has none', async () => {
    const dir = await tempDir();
    await qemuImg('create', '-q', '-f', 'vmdk', path.join(dir, 'base.vmdk'), '2M');
    const base = await withFile(path.join(dir, 'base.vmdk'), (fh) => readVmdkDescriptor(fh, 'base'));
    const child = path.join(dir, 'child.vmdk');
    await qemuImg('create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', child, '2M');
    await setVmdkParent(child, { hint: 'base.vmdk', cid: base.cid });
    const [image, parent] = await backingChain(child);
    expect(image).toMatchObject({ 'backing-filename': 'base.vmdk', 'format-specific': { data: { 'parent-cid': parseInt(base.cid, 16) } } });
    expect(parent.filename).toBe(path.join(dir, 'base.vmdk'));
  });

  // Until de94617 the rewrite trusted the sparse header: it wrote a descriptor past the end of the file (growing it)
  // or, with no embedded descriptor, returned having set no parent. Now it refuses both, as the reader always did.
  it.each([
    ['lies outside the file', 100, 1, /truncated or corrupt VMDK embedded descriptor/],
    ['is absent', 0, 0, /has no embedded descriptor/],
  ])('refuses a sparse extent whose embedded descriptor %s and leaves the file as it was', async (_case, offsetSectors, sizeSectors, refusal) => {
    const file = path.join(await tempDir(), 'child.vmdk');
    const header = Buffer.alloc(512);
    header.write('KDMV', 0, 'latin1');
    header.writeBigUInt64LE(BigInt(offsetSectors), 28);
    header.writeBigUInt64LE(BigInt(sizeSectors), 36);
    await fs.writeFile(file, header);
    await expect(setVmdkParent(file, { hint: 'base.vmdk', cid: '12345678' })).rejects.toThrow(refusal);
    expect((await fs.readFile(file)).equals(header)).toBe(true);
  });
});

describe('disk format detection', () => {
  it('knows qcow2 and VMDK by their bytes and calls anything else raw', async () => {
    const dir = await tempDir();
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(dir, 'd.qcow2'), '1M');
    await qemuImg('create', '-q', '-f', 'vmdk', path.join(dir, 'sparse.img'), '1M');
    await qemuImg('create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', path.join(dir, 'flat.vmdk'), '1M');
    await fs.copyFile(path.join(dir, 'flat.vmdk'), path.join(dir, 'flat.txt'));
    await fs.writeFile(path.join(dir, 'empty.vmdk'), '');
    const detect = (name: string) => withFile(path.join(dir, name), (fh) => detectDiskFormat(fh, path.join(dir, name)));
    expect(await detect('d.qcow2')).toBe('qcow2');
    expect(await detect('sparse.img')).toBe('vmdk');
    expect(await detect('flat.vmdk')).toBe('vmdk');
    // A text descriptor is known by its name too: a raw disk may begin with '#'.
    expect(await detect('flat.txt')).toBe('raw');
    expect(await detect('flat-flat.vmdk')).toBe('raw');
    expect(await detect('empty.vmdk')).toBe('raw');
  });
});

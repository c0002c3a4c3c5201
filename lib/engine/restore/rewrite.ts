/**
 * Rewrites pointers in restored files: a qcow2 child's backing file name, a VMDK child's parentFileNameHint
 * and parentCID, and the disk paths in a VM config (libvirt XML, .vmx). Each works on bytes in place.
 */
import fs from 'node:fs/promises';
import { InputError } from '../errors';
import { QCOW2_MAGIC } from '../formats/qcow2';
import { VMDK_SPARSE_MAGIC, descriptorBytes, readVmdkDescriptor } from '../formats/vmdk';

/** Points a qcow2 image at another backing file (same format). The name must fit in the header cluster. */
export async function setQcow2BackingFile(file: string, backingFile: string): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    const head = Buffer.alloc(24);
    await handle.read(head, 0, 24, 0);
    if (head.readUInt32BE(0) !== QCOW2_MAGIC) throw new InputError('not a qcow2 image', { file });
    const offset = Number(head.readBigUInt64BE(8));
    const oldSize = head.readUInt32BE(16);
    const clusterSize = 2 ** head.readUInt32BE(20);
    const name = Buffer.from(backingFile, 'utf8');
    if (offset === 0 || name.length > 1023 || offset + Math.max(name.length, oldSize) > clusterSize) {
      throw new InputError(`no room in the qcow2 header for backing file name '${backingFile}'`, { file });
    }
    // qemu keeps the name last in the header cluster: past the old name up to the new one must be free.
    if (name.length > oldSize) {
      const tail = Buffer.alloc(name.length - oldSize);
      await handle.read(tail, 0, tail.length, offset + oldSize);
      if (tail.some((byte) => byte !== 0)) throw new InputError(`no room in the qcow2 header for backing file name '${backingFile}'`, { file });
    }
    const padded = Buffer.alloc(Math.max(name.length, oldSize));
    name.copy(padded);
    await handle.write(padded, 0, padded.length, offset);
    const size = Buffer.alloc(4);
    size.writeUInt32BE(name.length);
    await handle.write(size, 0, 4, 16);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Sets parentFileNameHint and parentCID of a VMDK (text descriptor or descriptor embedded in a sparse file). */
export async function setVmdkParent(file: string, parent: { hint: string; cid: string }): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    const head = Buffer.alloc(44);
    const { bytesRead } = await handle.read(head, 0, 44, 0);
    const edit = (text: string) => {
      let result = text.replace(/^parentCID=.*$/m, `parentCID=${parent.cid}`);
      result = /^parentFileNameHint=/m.test(result)
        ? result.replace(/^parentFileNameHint=.*$/m, `parentFileNameHint="${parent.hint}"`)
        : result.replace(/^(parentCID=.*)$/m, `$1\nparentFileNameHint="${parent.hint}"`);
      return result;
    };
    if (bytesRead >= 44 && head.readUInt32LE(0) === VMDK_SPARSE_MAGIC) {
      const offset = Number(head.readBigUInt64LE(28)) * 512;
      const size = Number(head.readBigUInt64LE(36)) * 512;
      const region = Buffer.alloc(size);
      await handle.read(region, 0, size, offset);
      const text = Buffer.from(edit(descriptorBytes(region).toString('utf8')), 'utf8');
      if (text.length > size) throw new InputError('no room in the embedded VMDK descriptor for the new parent', { file });
      const out = Buffer.alloc(size);
      text.copy(out);
      await handle.write(out, 0, size, offset);
    } else {
      const text = Buffer.from(edit(descriptorBytes(await handle.readFile()).toString('utf8')), 'utf8');
      await handle.truncate(0);
      await handle.write(text, 0, text.length, 0);
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Reads a VMDK's CID (the value its children's parentCID must equal). */
export async function readVmdkCid(file: string): Promise<string> {
  const handle = await fs.open(file, 'r');
  try {
    return (await readVmdkDescriptor(handle, file)).cid;
  } finally {
    await handle.close();
  }
}

const escapeXml = (value: string) => value.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/** A libvirt domain with the `<source file=…>` of the given target devs replaced. */
export function rewriteLibvirtDisks(xml: string, pointers: Map<string, string>): string {
  return xml.replace(/<disk\b[\s\S]*?<\/disk>/g, (block) => {
    const dev = /<target\b[^>]*\bdev=(['"])(.*?)\1/.exec(block)?.[2];
    const to = dev === undefined ? undefined : pointers.get(dev);
    if (to === undefined) return block;
    return block.replace(/(<source\b[^>]*\bfile=)(['"])(.*?)\2/, (_m, start: string, quote: string) => `${start}${quote}${escapeXml(to)}${quote}`);
  });
}

/** A .vmx with the `<slot>.fileName` of the given slots replaced. */
export function rewriteVmxDisks(vmx: string, pointers: Map<string, string>): string {
  return vmx.replace(/^([A-Za-z]+\d+:\d+)\.fileName(\s*=\s*)"[^"]*"/gim, (line, slot: string, eq: string) => {
    const to = pointers.get(slot.toLowerCase());
    return to === undefined ? line : `${slot}.fileName${eq}"${to.replace(/"/g, '|22')}"`;
  });
}

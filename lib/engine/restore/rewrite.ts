/**
 * Rewrites the disk paths in a restored VM config (libvirt XML, .vmx). Image pointers (a qcow2 backing file, a
 * VMDK parent) are rewritten by formats/, which owns their layout.
 */

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

import path from 'node:path';

/** Where vmdedup keeps its data: the embedded catalog, the repository and the demo fleet. */
export function vmdedupHome(): string {
  return path.resolve(/*turbopackIgnore: true*/ process.env.VMDEDUP_HOME || './data');
}

export function repositoryDir(): string {
  return process.env.VMDEDUP_REPOSITORY ? path.resolve(process.env.VMDEDUP_REPOSITORY) : path.join(vmdedupHome(), 'repository');
}

/** Restores write with O_DIRECT where the filesystem takes it; VMDEDUP_DIRECT_IO=0 sends writes through the page cache. */
export function restoreDirectIo(): boolean {
  return process.env.VMDEDUP_DIRECT_IO !== '0';
}

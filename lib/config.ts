import path from 'node:path';

/** Where vmdedup keeps its data: the embedded catalog, the repository and the demo fleet. */
export function vmdedupHome(): string {
  return path.resolve(/*turbopackIgnore: true*/ process.env.VMDEDUP_HOME || './data');
}

export function repositoryDir(): string {
  return process.env.VMDEDUP_REPOSITORY ? path.resolve(process.env.VMDEDUP_REPOSITORY) : path.join(vmdedupHome(), 'repository');
}

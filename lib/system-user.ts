/** System users vmdedup runs its helpers as when started as root: PostgreSQL's (`postgres`) and the web server's. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type SystemUser = { name: string; uid: number; gid: number };

/** The user `name`, created first as a system user (own group, no home, no login shell) if it does not exist. */
export async function ensureSystemUser(name: string): Promise<SystemUser & { created: boolean }> {
  const lookup = async (): Promise<SystemUser> => ({
    name, uid: Number((await run('id', ['-u', name])).stdout.trim()), gid: Number((await run('id', ['-g', name])).stdout.trim()),
  });
  try {
    return { ...(await lookup()), created: false };
  } catch {
    const made = await run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name])
      .then(() => undefined, (err: { stderr?: string; message: string }) => (err.stderr || err.message).trim());
    // Created meanwhile by another process, or not at all: the lookup says which.
    const user = await lookup().catch(() => {
      throw new Error(`cannot create the system user '${name}'${made ? ` (${made})` : ''}`);
    });
    return { ...user, created: made === undefined };
  }
}

/**
 * VMDEDUP_HOME and the repository hold a copy of every disk and every VM config of the fleet: nobody but
 * vmdedup may read them. Every vmdedup process (CLI, worker, `npm start`) calls prepareHome first.
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repositoryLocation, vmdedupHome } from './config';
import { isS3Location } from './engine/repository/s3-location';

/**
 * Run by root, vmdedup has two other users reach into VMDEDUP_HOME: the embedded catalog's PostgreSQL (its data in
 * catalog/pgdata) and the web server (its code in web/). The home and catalog folders then let others through (x)
 * without letting them list or read anything; what lies inside is each one's own.
 */
function traversableByOthers(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Makes the process create private files (umask 077), creates VMDEDUP_HOME private, and tightens a home or
 * repository that others can read (made by an older vmdedup, or by hand): every file and folder in it loses its
 * group and other permissions. Returns one line per folder tightened, for the caller to print.
 */
export async function prepareHome(): Promise<string[]> {
  process.umask(0o077);
  const home = vmdedupHome();
  const through = traversableByOthers();
  const homeMode = through ? 0o711 : 0o700;
  await fs.mkdir(home, { recursive: true, mode: homeMode });
  const notices: string[] = [];
  // web/ has its own modes (the web server's group); catalog/pgdata is PostgreSQL's, private by its own rules.
  const tightenedHome = await tighten(home, homeMode, { skip: new Set([path.join(home, 'web'), path.join(home, 'catalog')]) });
  if (tightenedHome) notices.push(`tightened permissions under ${home}: ${tightenedHome} files and folders were open to other users (now owner only)`);
  // The umask applies to mkdir's mode too: set the home's own mode exactly.
  if (((await fs.stat(home)).mode & 0o777) !== homeMode) await fs.chmod(home, homeMode);
  const repository = repositoryLocation();
  // A bucket's access is the object store's (its policies), not file modes.
  const tightenedRepository = isS3Location(repository) ? 0 : await tighten(repository, 0o700);
  if (tightenedRepository) notices.push(`tightened permissions of the repository ${repository}: ${tightenedRepository} files and folders were open to other users (now owner only)`);
  // The embedded catalog's folder (made by lib/catalog/embedded-postgres.ts when used) lets its PostgreSQL through.
  if (through) await fs.chmod(path.join(home, 'catalog'), 0o711).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
  return notices;
}

/**
 * When `root` itself allows more than `rootMode`, walks it and strips group and other permissions from
 * everything in it (symlinks are not followed), then sets `root` to `rootMode`. Returns how many entries inside
 * changed: a folder that was only listable itself (a new empty one made with the usual umask) is fixed quietly.
 */
async function tighten(root: string, rootMode: number, options: { skip?: Set<string> } = {}): Promise<number> {
  const stat = await fs.stat(root).catch(() => undefined);
  if (!stat?.isDirectory() || (stat.mode & 0o777 & ~rootMode) === 0) return 0;
  let changed = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isSymbolicLink() || options.skip?.has(file)) continue;
      const mode = (await fs.lstat(file)).mode & 0o7777;
      if (mode & 0o077) {
        await fs.chmod(file, mode & ~0o077);
        changed++;
      }
      if (entry.isDirectory()) await walk(file);
    }
  };
  await walk(root);
  await fs.chmod(root, rootMode);
  return changed;
}

/** Where each `npm start` of a home keeps its pid while it runs (`vmdedup stop` reads them): one file per start, since
 *  several may serve one home (on other ports). */
export function startPidFile(home: string, pid = process.pid): string {
  return path.join(startPidDir(home), `start-${pid}.pid`);
}

function startPidDir(home: string): string {
  return path.join(home, 'run');
}

/**
 * A process's start time as the kernel counts it (field 22 of /proc/<pid>/stat): with the pid, what names one
 * process for good (a pid alone is handed out again after it ends). Undefined where there is no /proc.
 */
export function processStartTicks(pid: number): string | undefined {
  try {
    const stat = fsSync.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The `npm start`s of this home that still run, as their pid files name them: pid and start time both still match
 *  (a file left by a start that died, or whose pid is another program's now, is removed). */
export function runningStartPids(home: string): number[] {
  let names: string[];
  try {
    names = fsSync.readdirSync(startPidDir(home)).filter((name) => /^start-\d+\.pid$/.test(name));
  } catch {
    return [];
  }
  const running: number[] = [];
  for (const name of names) {
    const file = path.join(startPidDir(home), name);
    let recorded = '';
    try { recorded = fsSync.readFileSync(file, 'utf8'); } catch { continue; }
    const [pidText, ticks] = recorded.trim().split(/\s+/);
    const pid = Number.parseInt(pidText, 10);
    if (Number.isSafeInteger(pid) && pid > 0 && ticks && processStartTicks(pid) === ticks) running.push(pid);
    else fsSync.rmSync(file, { force: true });
  }
  return running;
}

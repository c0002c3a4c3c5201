/**
 * `npm start`: sets up and runs vmdedup on its embedded defaults. Starts (or connects to) the catalog,
 * applies migrations, creates and backs up a demo fleet when no source is configured, builds the web app
 * when needed and serves it. Started as root, the web server runs as the unprivileged user `vmdedup` (made if
 * missing; VMDEDUP_WEB_USER names another) from its own copy of the build, and the job worker, which alone
 * reads disks and writes restores, keeps root.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runBackup } from '../services/backups/run-backup';
import { addSource } from '../services/sources/add-source';
import { listSources } from '../services/sources/list-sources';
import { repositoryLocation, restoreRoots, vmdedupHome } from '../config';
import { ensureFirstAdmin } from '../services/users/ensure-first-admin';
import { appCatalogUrl, catalogUrl, getCatalog, getCatalogSql } from '../catalog/db';
import { buildFleet } from '../demo/fleet';
import { openRepository } from '../open-repository';
import { formatBytes } from '../format';
import { prepareHome, processStartTicks, startPidFile } from '../home';
import { type SystemUser, ensureSystemUser } from '../system-user';

const appDir = process.env.VMDEDUP_APP_DIR ?? process.cwd();

export async function start(): Promise<number> {
  const home = vmdedupHome();
  for (const notice of await prepareHome()) log(notice);
  // Its own pid file (several starts may serve one home on other ports): pid and start time, for `vmdedup stop`.
  const pidFile = startPidFile(home);
  await fs.mkdir(path.dirname(pidFile), { recursive: true, mode: 0o700 });
  await fs.writeFile(pidFile, `${process.pid} ${processStartTicks(process.pid) ?? ''}\n`, { mode: 0o600 });
  process.on('exit', () => fsSync.rmSync(pidFile, { force: true }));
  log(`data: ${home}`);
  const url = await catalogUrl();
  const sql = await getCatalogSql();
  log(process.env.DATABASE_URL ? 'catalog: external PostgreSQL (DATABASE_URL)' : `catalog: embedded PostgreSQL in ${path.join(home, 'catalog')}`);

  if ((await listSources(sql)).length === 0 && process.env.VMDEDUP_DEMO !== '0') await createDemo(home);
  const admin = await announceFirstAdmin();
  const authSecret = await ensureAuthSecret(home);

  if (await needsBuild()) {
    log('building the web app (first start or changed sources) ...');
    const build = spawnSync(process.execPath, [nextBin(), 'build'], { cwd: appDir, stdio: 'inherit', env: nextEnv(url) });
    if (build.status !== 0) return build.status ?? 1;
  }
  const port = process.env.PORT ?? '3000';
  const host = process.env.HOST ?? '127.0.0.1';
  const webUser = await unprivilegedWebUser();
  const web = await installWebServer(home, webUser);
  // The last lines before the server's own: where to go, how to sign in (a generated password again, which the build's
  // output would have buried), how to stop.
  log(`serving on http://${host}:${port}${webUser ? ` as user '${webUser.name}'` : ''}`);
  if (admin?.generated) log(`sign in as '${admin.username}' with password  ${admin.password}  (shown only on this first start)`);
  log("stop with Ctrl-C, or from another shell 'npx vmdedup stop' (it also stops the embedded catalog)");
  // Not `next start`: web-server.mjs tells the app each request's peer address (trusted proxies, throttling).
  const server = spawn(process.execPath, [path.join(web, 'web-server.mjs'), port, host], {
    cwd: web, stdio: 'inherit', ...(webUser ? { uid: webUser.uid, gid: webUser.gid } : {}),
    // The app database role only (no DATABASE_URL: that would make it an owner process that migrates).
    // Paths as this process resolves them: the web server runs in its build folder, where './data' means another place.
    env: webServerEnv({
      VMDEDUP_APP_DATABASE_URL: await appCatalogUrl(), AUTH_SECRET: authSecret, HOME: path.join(web, '.next', 'cache'),
      VMDEDUP_HOME: home, VMDEDUP_REPOSITORY: repositoryLocation(), VMDEDUP_RESTORE_ROOTS: restoreRoots().join(':'),
    }),
  });
  // The job worker runs beside the web server (more can run elsewhere with `npm run worker`).
  const worker = process.env.VMDEDUP_WORKER === '0'
    ? undefined
    : spawn(process.execPath, [path.join(appDir, 'bin', 'worker.mjs')], { cwd: appDir, stdio: 'inherit', env: { ...process.env, DATABASE_URL: url, VMDEDUP_HOME: home, VMDEDUP_REPOSITORY: repositoryLocation() } });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { server.kill(signal); worker?.kill(signal); });
  worker?.on('exit', (code, signal) => { if (!server.killed && (code || signal)) log(`the job worker stopped (${signal ?? `exit ${code}`}); start another with: npm run worker`); });
  const code = await new Promise<number>((resolve) => server.on('exit', (c) => resolve(c ?? 0)));
  worker?.kill('SIGTERM');
  return code;
}

/** First start: the admin account, with VMDEDUP_ADMIN_PASSWORD or a generated password shown this once. */
async function announceFirstAdmin(): Promise<Awaited<ReturnType<typeof ensureFirstAdmin>>> {
  const admin = await ensureFirstAdmin(await getCatalog(), { password: process.env.VMDEDUP_ADMIN_PASSWORD });
  if (!admin) return admin;
  if (admin.generated) {
    log(`created the first user: '${admin.username}' with password  ${admin.password}`);
    log('this password is shown only now: sign in and keep it safe (an admin can reset it; so can `npx vmdedup user set-password admin`)');
  } else {
    log(`created the first user: '${admin.username}' with the password in VMDEDUP_ADMIN_PASSWORD`);
  }
  return admin;
}

/** next-auth signs sessions with AUTH_SECRET: taken from the environment, else made once and kept in VMDEDUP_HOME. */
async function ensureAuthSecret(home: string): Promise<string> {
  if (process.env.AUTH_SECRET) return process.env.AUTH_SECRET;
  const file = path.join(home, 'auth-secret');
  const existing = await fs.readFile(file, 'utf8').catch(() => '');
  if (existing.trim()) return existing.trim();
  const secret = randomBytes(32).toString('base64url');
  await fs.writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' }).catch(async (err) => {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
  return (await fs.readFile(file, 'utf8')).trim();
}

async function createDemo(home: string): Promise<void> {
  const tools = spawnSync('bash', [path.join(appDir, 'scripts', 'ensure-tools.sh'), 'qemu-img', 'qemu-io'], { stdio: 'inherit' });
  if (tools.status !== 0) {
    log('no demo fleet (qemu-img is missing); add your own with: npx vmdedup source add <name> --type libvirt|vmware --path <dir>');
    return;
  }
  const dir = path.join(home, 'demo-fleet');
  log(`no sources configured: creating a demo fleet in ${dir} ...`);
  await fs.rm(dir, { recursive: true, force: true });
  const fleet = await buildFleet({ dir, bases: 1, clonesPerBase: 3, baseMiB: 32, cloneDeltaMiB: 2, configDiskMiB: 4, privateDiskMiB: 8, vmwareVms: 2, vmwareBaseMiB: 16 });
  const sql = await getCatalogSql();
  await addSource(sql, { name: 'demo-libvirt', type: 'libvirt', path: fleet.libvirtDir });
  await addSource(sql, { name: 'demo-vmware', type: 'vmware', path: fleet.vmwareDir! });
  const repo = await openRepository();
  const report = await runBackup(sql, { repo });
  for (const failure of report.failures) log(`demo VM ${failure.vm} not backed up: ${failure.error}`);
  log(`demo fleet backed up: ${report.backups.length} VMs, logical ${formatBytes(report.totals.logicalBytes)}, written ${formatBytes(report.totals.bytesWritten)}`);
}

/** A build is needed when there is none, or when a source file is newer than it. */
async function needsBuild(): Promise<boolean> {
  const buildId = await fs.stat(path.join(appDir, '.next', 'BUILD_ID')).catch(() => undefined);
  if (!buildId || !(await exists(path.join(appDir, '.next', 'standalone', 'server.js')))) return true;
  // proxy.ts (the origin check, security headers) and the Next config are built in too.
  for (const file of ['proxy.ts', 'next.config.js']) {
    const stat = await fs.stat(path.join(appDir, file)).catch(() => undefined);
    if (stat && stat.mtimeMs > buildId.mtimeMs) return true;
  }
  for (const dir of ['app', 'components', 'lib']) {
    const entries = await fs.readdir(path.join(appDir, dir), { recursive: true, withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isFile() || entry.parentPath.includes('generated')) continue;
      if ((await fs.stat(path.join(entry.parentPath, entry.name))).mtimeMs > buildId.mtimeMs) return true;
    }
  }
  return false;
}

/** The build gets the catalog's URL, and Next's telemetry stays off (no calls home from a backup server). */
function nextEnv(url: string): NodeJS.ProcessEnv {
  return { ...process.env, DATABASE_URL: url, NEXT_TELEMETRY_DISABLED: '1' };
}

/** What the web server may know of the environment: vmdedup's and next-auth's settings, never root's other secrets. */
function webServerEnv(own: Record<string, string>): NodeJS.ProcessEnv {
  const passed = Object.entries(process.env).filter(([name]) =>
    ['PATH', 'LANG', 'LC_ALL', 'TZ'].includes(name) || ((name.startsWith('VMDEDUP_') || name.startsWith('AUTH_')) && name !== 'VMDEDUP_ADMIN_PASSWORD'));
  // DATABASE_URL is not passed: the web server connects as the app role (own.VMDEDUP_APP_DATABASE_URL).
  return { ...Object.fromEntries(passed), NODE_ENV: 'production', NEXT_TELEMETRY_DISABLED: '1', ...own };
}

export type WebUser = SystemUser;

/** As root: the user the web server runs as (made as a system user if missing). Otherwise: none, it runs as we do. */
async function unprivilegedWebUser(): Promise<WebUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const name = process.env.VMDEDUP_WEB_USER || 'vmdedup';
  if (name === 'root') {
    log('warning: VMDEDUP_WEB_USER=root: the web server runs as root (any flaw in it is then root on this machine)');
    return undefined;
  }
  const { created, ...user } = await ensureSystemUser(name).catch((err: Error) => {
    throw new Error(`${err.message} for the web server: create it, or name another with VMDEDUP_WEB_USER`);
  });
  if (created) log(`created the system user '${name}': the web server runs as it`);
  return user;
}

/**
 * Copies the standalone build (.next/standalone, plus its static files and bin/web-server.mjs) to VMDEDUP_HOME/web/<build id>, readable by
 * the web server's user and nobody else: the app's own folder may sit where that user cannot reach (under /root).
 * Earlier builds' copies are removed. Returns the folder to run server.js in.
 */
export async function installWebServer(home: string, user: WebUser | undefined, from = appDir): Promise<string> {
  const buildId = (await fs.readFile(path.join(from, '.next', 'BUILD_ID'), 'utf8')).trim();
  const webRoot = path.join(home, 'web');
  const target = path.join(webRoot, buildId);
  await fs.mkdir(webRoot, { recursive: true, mode: 0o750 });
  if (!(await exists(path.join(target, 'server.js')))) {
    const temp = `${target}.tmp-${process.pid}`;
    removeTree(temp);
    await fs.cp(path.join(from, '.next', 'standalone'), temp, { recursive: true, verbatimSymlinks: true });
    await fs.cp(path.join(from, '.next', 'static'), path.join(temp, '.next', 'static'), { recursive: true });
    if (await exists(path.join(from, 'public'))) await fs.cp(path.join(from, 'public'), path.join(temp, 'public'), { recursive: true });
    await fs.copyFile(path.join(from, 'bin', 'web-server.mjs'), path.join(temp, 'web-server.mjs'));
    // Modes are set once, on the copy nobody else can reach yet (web/ is not writable by the web user).
    await shareWithGroup(temp, user?.gid);
    removeTree(target);
    await fs.rename(temp, target);
  }
  await fs.chmod(webRoot, 0o750);
  if (user) await fs.chown(webRoot, 0, user.gid);
  // Earlier builds go, except one a web server still runs from (a second npm start on this home, a restart in
  // progress). Not fatal: an old build left behind is root's and runs no more.
  const inUse = webServerBuildsInUse(webRoot);
  for (const entry of await fs.readdir(webRoot)) {
    if (entry === buildId || inUse.has(entry)) continue;
    try { removeTree(path.join(webRoot, entry)); } catch (err) { log(`warning: ${(err as Error).message}`); }
  }
  // Next may write its cache: the web user's own folder, never walked by root.
  const cache = path.join(target, '.next', 'cache');
  await fs.mkdir(cache, { recursive: true, mode: 0o700 });
  if (user) await fs.chown(cache, user.uid, user.gid);
  return target;
}

/**
 * Removes a folder that may hold the web user's files (its cache), which that user may swap for symlinks while we
 * remove them: a removal that follows a swapped folder deletes root's files elsewhere. GNU rm walks with openat and
 * never leaves the tree it started in (Node's fs.rm reads a folder again by its path).
 */
function removeTree(dir: string): void {
  const rm = spawnSync('rm', ['-rf', '--one-file-system', '--', dir], { encoding: 'utf8' });
  if (rm.status !== 0) throw new Error(`cannot remove ${dir}: ${(rm.stderr || rm.error?.message || '').trim()}`);
}

/** Owner rwx/rw, group r-x/r--, others nothing, for everything under `dir`; the group becomes `gid` when given. */
async function shareWithGroup(dir: string, gid: number | undefined): Promise<void> {
  const apply = async (file: string, isDir: boolean) => {
    if (gid !== undefined) await fs.lchown(file, 0, gid);
    const stat = await fs.lstat(file);
    if (!stat.isSymbolicLink()) await fs.chmod(file, isDir || stat.mode & 0o100 ? 0o750 : 0o640);
  };
  await apply(dir, true);
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    await apply(path.join(entry.parentPath, entry.name), entry.isDirectory());
  }
}

/** The build folders under `webRoot` that a running process (a web server: its working folder) is inside. */
function webServerBuildsInUse(webRoot: string): Set<string> {
  const builds = new Set<string>();
  const root = fsSync.realpathSync(webRoot);
  for (const pid of fsSync.readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    const cwd = (() => { try { return fsSync.readlinkSync(`/proc/${pid}/cwd`); } catch { return undefined; } })();
    if (cwd?.startsWith(`${root}/`)) builds.add(cwd.slice(root.length + 1).split('/')[0]);
  }
  return builds;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false);
}

function nextBin(): string {
  return path.join(appDir, 'node_modules', 'next', 'dist', 'bin', 'next');
}

function log(message: string): void {
  process.stdout.write(`vmdedup: ${message}\n`);
}

/**
 * `npm start`: sets up and runs vmdedup on its embedded defaults. Starts (or connects to) the catalog,
 * applies migrations, creates and backs up a demo fleet when no source is configured, builds the web app
 * when needed and serves it.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runBackup } from '../catalog/run-backup';
import { addSource, listSources } from '../catalog/sources';
import { repositoryDir, vmdedupHome } from '../config';
import { catalogUrl, getCatalogSql } from '../db';
import { buildFleet } from '../demo/fleet';
import { openRepository } from '../open-repository';
import { formatBytes } from './format';

const appDir = process.env.VMDEDUP_APP_DIR ?? process.cwd();

export async function start(): Promise<number> {
  const home = vmdedupHome();
  await fs.mkdir(home, { recursive: true });
  log(`data: ${home}`);
  const url = await catalogUrl();
  const sql = await getCatalogSql();
  log(process.env.DATABASE_URL ? 'catalog: external PostgreSQL (DATABASE_URL)' : `catalog: embedded PostgreSQL in ${path.join(home, 'catalog')}`);

  if ((await listSources(sql)).length === 0 && process.env.VMDEDUP_DEMO !== '0') await createDemo(home);

  if (await needsBuild()) {
    log('building the web app (first start or changed sources) ...');
    const build = spawnSync(process.execPath, [nextBin(), 'build'], { cwd: appDir, stdio: 'inherit', env: nextEnv(url) });
    if (build.status !== 0) return build.status ?? 1;
  }
  const port = process.env.PORT ?? '3000';
  const host = process.env.HOST ?? '127.0.0.1';
  log(`serving on http://${host}:${port}  (stop with Ctrl-C; 'npx vmdedup db stop' stops the embedded catalog)`);
  const server = spawn(process.execPath, [nextBin(), 'start', '-p', port, '-H', host], {
    cwd: appDir, stdio: 'inherit', env: nextEnv(url),
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.kill(signal));
  return new Promise((resolve) => server.on('exit', (code) => resolve(code ?? 0)));
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
  if (!buildId) return true;
  for (const dir of ['app', 'components', 'lib']) {
    const entries = await fs.readdir(path.join(appDir, dir), { recursive: true, withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isFile() || entry.parentPath.includes('generated')) continue;
      if ((await fs.stat(path.join(entry.parentPath, entry.name))).mtimeMs > buildId.mtimeMs) return true;
    }
  }
  return false;
}

/** The web server gets the catalog's URL, and Next's telemetry stays off (no calls home from a backup server). */
function nextEnv(url: string): NodeJS.ProcessEnv {
  return { ...process.env, DATABASE_URL: url, NEXT_TELEMETRY_DISABLED: '1' };
}

function nextBin(): string {
  return path.join(appDir, 'node_modules', 'next', 'dist', 'bin', 'next');
}

function log(message: string): void {
  process.stdout.write(`vmdedup: ${message}\n`);
}

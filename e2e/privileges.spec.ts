/**
 * Least privilege as a local attacker would test it: the web server started as root by `npm start` runs as an
 * unprivileged user that cannot read the repository; nothing under VMDEDUP_HOME is readable by other users after a
 * backup and a restore; a browser restore outside the restore roots, or through a symlink leading out of them, is
 * refused with a clear message and writes nothing.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ADMIN, e2eHome, expect, signIn, test, vmdedup } from './fixtures';

const runAsRoot = process.getuid?.() === 0;

/** The e2e web server's process: the one that listens on the test's port (its socket inode in /proc/net/tcp). */
function webServerPid(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set(fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1]?.endsWith(`:${hexPort}`) && fields[3] === '0A') // 0A: LISTEN
    .map((fields) => fields[9]));
  for (const pid of fs.readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    try {
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        const link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
        if (inode && inodes.has(inode)) return Number(pid);
      }
    } catch {
      // a process that ended, or one we may not look into
    }
  }
  throw new Error(`no process listens on port ${port}`);
}

function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

test('the web server runs as an unprivileged user that cannot read the repository', async ({ baseURL }) => {
  test.skip(!runAsRoot, 'privileges are dropped only when started as root');
  const pid = webServerPid(Number(new URL(baseURL!).port));
  const uid = uidOf(pid);
  expect(uid).not.toBe(0);
  const user = execFileSync('id', ['-nu', String(uid)], { encoding: 'utf8' }).trim();
  const repository = path.join(e2eHome(), 'repository');
  const anImage = fs.readdirSync(path.join(repository, 'images')).find((name) => name.endsWith('.pack'))!;
  // What that user can read: nothing of the repository, not even the list of backups.
  for (const file of [path.join(repository, 'config.json'), path.join(repository, 'images', anImage), path.join(e2eHome(), 'auth-secret')]) {
    expect(() => execFileSync('runuser', ['-u', user, '--', 'cat', file], { stdio: 'pipe' }), file).toThrow(/Permission denied/);
  }
  expect(() => execFileSync('runuser', ['-u', user, '--', 'ls', path.join(repository, 'images')], { stdio: 'pipe' })).toThrow(/Permission denied/);
});

test('nothing under VMDEDUP_HOME is readable or writable by other users after a backup and a restore', async () => {
  vmdedup(['backup', '--source', 'kvm']);
  const target = path.join(e2eHome(), 'restores', 'privileges-vm01');
  // Other specs add sources with a vm01 of their own: this one is the e2e fleet's.
  const { backups } = JSON.parse(vmdedup(['backups', '--vm', 'vm01', '--json'])) as { backups: { backupId: string; source: string }[] };
  vmdedup(['restore', 'vm01', '--backup', backups.find((b) => b.source === 'kvm')!.backupId, '--target', target, '--confirm-drift']);
  expect(fs.readdirSync(target).length).toBeGreaterThan(0);
  const open: string[] = [];
  // Fleets that other specs build in the home (as this root test process, umask 022) are the test's, not vmdedup's.
  const specFleet = /^(lab-\d+|rst\d+|big\d+)$/;
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (dir === e2eHome() && specFleet.test(entry.name)) continue;
      const mode = fs.lstatSync(file).mode;
      if (!entry.isSymbolicLink() && mode & 0o006) open.push(`${(mode & 0o777).toString(8)} ${file}`);
      if (entry.isDirectory()) walk(file);
    }
  };
  // The home itself may let others through (x) to the catalog's and the web server's folders, never list or read it.
  expect(fs.statSync(e2eHome()).mode & 0o006).toBe(0);
  walk(e2eHome());
  expect(open).toEqual([]);
});

test('a browser restore outside the restore roots, or through a symlink leading out of them, is refused', async ({ page }) => {
  const outside = fs.mkdtempSync('/tmp/vmdedup-outside-');
  const link = path.join(e2eHome(), 'restores', 'leads-out');
  fs.mkdirSync(path.dirname(link), { recursive: true });
  fs.rmSync(link, { force: true });
  fs.symlinkSync(outside, link);
  try {
    await signIn(page, ADMIN);
    for (const target of [path.join(outside, 'vm01'), '/etc/cron.d/vmdedup-test', path.join(link, 'vm01')]) {
      await page.goto('/restores/new');
      await page.getByLabel('VM', { exact: true }).selectOption({ label: 'vm01 (kvm)' });
      await expect(page.getByRole('radio').first()).toBeChecked();
      await page.getByLabel('Target folder').fill(target);
      await page.getByRole('button', { name: 'Plan the restore' }).click();
      await expect(page.getByTestId('restore-error')).toContainText(`may write only under ${path.join(e2eHome(), 'restores')}`);
    }
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(fs.existsSync('/etc/cron.d/vmdedup-test')).toBe(false);
  } finally {
    fs.rmSync(link, { force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  }
});

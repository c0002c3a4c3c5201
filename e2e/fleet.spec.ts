/**
 * The administrator's path through the dashboard: add a source (a fleet made here with qemu-img), back it
 * up from the browser and watch the job, find its common disks in the graph and the VM pages, and check
 * that the savings shown (and exported) are the CLI's figures.
 */
import fs from 'node:fs';
import path from 'node:path';
import { formatBytes } from '../lib/format';
import { buildFleet } from '../lib/demo/fleet';
import { ADMIN, e2eHome, expect, signIn, test, vmdedup } from './fixtures';

test('add a source, back it up with live progress, see its common disks and the savings the CLI reports', async ({ page }, testInfo) => {
  test.setTimeout(180_000);
  const fleet = await buildFleet({ dir: path.join(e2eHome(), `lab-${Date.now()}`), bases: 1, clonesPerBase: 3, baseMiB: 384, cloneDeltaMiB: 8, configDiskMiB: 32, privateDiskMiB: 96, vmwareVms: 0, seed: 7 });
  const sourceName = `lab${Date.now() % 100000}`;

  await signIn(page, ADMIN);
  await page.goto('/sources');
  const form = page.getByRole('form', { name: 'Add a source' });
  await form.getByLabel('Name').fill(sourceName);
  await form.getByLabel('Type').selectOption('libvirt');
  await form.getByLabel('Folder on the server').fill('relative/path');
  await form.getByRole('button', { name: 'Add source' }).click();
  await expect(page.getByRole('status')).toContainText('absolute path');
  // A libvirt connection instead of a folder: only local ones (the disks must be files on this host).
  await form.getByLabel('Folder on the server').fill('');
  await form.getByLabel('or libvirt connection').fill('qemu+ssh://elsewhere/system');
  await form.getByRole('button', { name: 'Add source' }).click();
  await expect(page.getByRole('status')).toContainText("libvirt URI 'qemu+ssh://elsewhere/system' is not supported");
  await form.getByLabel('or libvirt connection').fill('');
  await form.getByLabel('Folder on the server').fill(fleet.libvirtDir);
  await form.getByLabel('Storage folders').fill('images');
  await form.getByRole('button', { name: 'Add source' }).click();
  await expect(page.getByRole('status')).toContainText('each storage folder as an absolute path');
  // A storage folder (here the fleet's own images folder) is checked by the worker and shown with the source.
  await form.getByLabel('Storage folders').fill(path.join(fleet.libvirtDir, 'images'));
  await form.getByRole('button', { name: 'Add source' }).click();
  await expect(page.getByRole('status')).toContainText(`Source ${sourceName} added`);
  // The new source is scanned by the worker: its VMs show up, none protected yet.
  const sourceRow = page.getByRole('listitem', { name: `source ${sourceName}` });
  await expect(sourceRow.getByTestId('source-storage')).toHaveText(`disks also in ${fs.realpathSync(path.join(fleet.libvirtDir, 'images'))}`);
  await expect(sourceRow.getByTestId('source-vms')).toHaveText('3 VMs, 0 protected', { timeout: 30_000 });

  await page.goto('/backups');
  await page.getByLabel('What to back up').selectOption({ label: `All VMs of ${sourceName}` });
  await page.getByRole('button', { name: 'Back up now' }).click();
  const job = page.getByTestId('job').filter({ hasText: `Back up source ${sourceName}` }).first();
  const bar = job.getByRole('progressbar');
  await expect(bar).toBeVisible({ timeout: 30_000 });
  await expect(job.getByTestId('job-state')).toHaveText('succeeded', { timeout: 120_000 });
  await expect(bar).toHaveAttribute('aria-valuenow', '100');
  await expect(job).toContainText('3 VMs backed up');
  await expect(job).toContainText(/MiB of \d+ MiB/);

  // The graph: this source's common disks (the linked-clone base and the configuration disk).
  await page.goto('/graph');
  await page.getByLabel('Source').selectOption(sourceName);
  const common = page.getByRole('list', { name: 'Common disks in view' });
  await expect(common.getByRole('button', { name: 'base-1.qcow2' })).toBeVisible();
  await expect(common.getByRole('button', { name: 'site-config.raw' })).toBeVisible();
  await common.getByRole('button', { name: 'site-config.raw' }).click();
  await expect(page.getByRole('region', { name: 'Selected node' })).toContainText('vm01, vm02, vm03');
  await expect(page.getByTestId('graph-summary')).toContainText('3 VMs');
  await page.screenshot({ path: testInfo.outputPath('graph.png'), fullPage: true });

  // VMs: filters and a VM's page with its pointers and parent chain.
  await page.goto('/vms');
  await page.getByLabel('Search VMs').fill(sourceName);
  await expect(page.getByTestId('vm-count')).toContainText('3 of');
  await page.getByLabel('Has common disks').selectOption('no');
  await expect(page.getByTestId('vm-count')).toContainText('0 of');
  await page.getByLabel('Has common disks').selectOption('yes');
  await page.getByRole('link', { name: 'vm02' }).click();
  const clone = page.getByRole('row', { name: `disk ${fs.realpathSync(path.join(fleet.libvirtDir, 'images', 'vm02.qcow2'))}` });
  await expect(clone).toContainText('→ base-1.qcow2');
  const base = page.getByRole('row', { name: /disk .*base-1\.qcow2/ });
  await expect(base).toContainText('common');
  await expect(base).toContainText('vm01, vm03');
  // A backup of this VM alone, from its page.
  await page.getByRole('button', { name: 'Back up this VM' }).click();
  await expect(page.getByRole('status')).toContainText(/Backup queued|already queued or running/);
  await page.getByRole('link', { name: 'See its progress' }).click();
  const vmJob = page.getByTestId('job').filter({ hasText: 'Back up vm02' }).first();
  await expect(vmJob.getByTestId('job-state')).toHaveText('succeeded', { timeout: 60_000 });
  await expect(vmJob).toContainText('1 VM backed up');

  // Savings: the page and its CSV give the CLI's figures.
  const stats = JSON.parse(vmdedup(['stats', '--json'])) as { savedByCommonDisks: number };
  await page.goto('/savings');
  await expect(page.getByTestId('total-saved')).toHaveText(formatBytes(stats.savedByCommonDisks));
  const csv = await (await page.request.get('/api/savings?view=disks')).text();
  const [header, ...rows] = csv.trim().split('\r\n');
  const savedColumn = header.split(',').indexOf('bytesSaved');
  const fromCsv = rows.reduce((sum, row) => sum + Number(row.split(',')[savedColumn]), 0);
  expect(fromCsv).toBe(stats.savedByCommonDisks);

  // A broken VM config appears in the source: the next scan lists it as a problem of that file.
  const broken = path.join(fleet.libvirtDir, 'broken.xml');
  fs.writeFileSync(broken, "<domain type='kvm'><name>broken</name><devices><disk type='file'");
  await page.goto('/sources');
  await sourceRow.getByRole('button', { name: 'Scan now' }).click();
  await expect(sourceRow.getByRole('list', { name: `problems of ${sourceName}` })).toContainText('broken.xml', { timeout: 30_000 });
  await expect(sourceRow.getByTestId('source-vms')).toHaveText('4 VMs, 3 protected');

  await page.goto('/');
  await expect(page.getByTestId('saved-common')).toContainText(formatBytes(stats.savedByCommonDisks));
  await expect(page.getByRole('img', { name: /Logical bytes .* against stored bytes/ })).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath('overview.png'), fullPage: true });
});

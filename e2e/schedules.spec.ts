/**
 * Unattended operation in the browser (issue 12): an admin adds a scheduled backup job and sees its run happen on the
 * schedule, previews a prune (what each rule keeps, what it frees), runs it and sees the space freed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ADMIN, e2eHome, expect, signIn, test, vmdedup } from './fixtures';

test('a scheduled job runs on its schedule; a prune is previewed, run, and frees space', async ({ page }) => {
  test.setTimeout(240_000);
  await signIn(page, ADMIN);
  await page.goto('/schedules');
  await expect(page.getByRole('heading', { name: 'Schedules & retention' })).toBeVisible();

  // A job every minute for vm01, keeping its last 2 backups.
  const name = `minutely-${Date.now() % 100000}`;
  await page.getByLabel('Job name').fill(name);
  await page.getByLabel('Schedule', { exact: true }).fill('61 * * * *');
  await page.getByRole('button', { name: 'Add job' }).click();
  await expect(page.getByRole('status')).toContainText('not a cron expression');
  await page.getByLabel('Schedule', { exact: true }).fill('* * * * *');
  // Of source kvm: other specs add sources (some of them broken on purpose), which would make a run of every source
  // partial.
  await page.getByLabel('Source', { exact: true }).selectOption('kvm');
  await page.getByLabel('VM patterns').fill('vm01');
  await page.getByLabel('Job keep last').fill('2');
  await page.getByLabel('Retries', { exact: true }).fill('1');
  await page.getByRole('button', { name: 'Add job' }).click();
  await expect(page.getByRole('status')).toContainText(`Job ${name} added`);
  const row = page.getByTestId(`schedule-${name}`);
  await expect(row).toContainText('kvm: vm01');
  await expect(row).toContainText('last 2');
  await expect(row).toContainText('retried 1× from 10 min, doubling');
  // Nobody presses anything: the worker's scheduler runs it at the next minute.
  const run = page.getByTestId('job').filter({ hasText: `Backup job ${name}` }).first();
  await expect(run.getByTestId('job-state')).toHaveText('succeeded', { timeout: 150_000 });
  await expect(run).toContainText('1 VM backed up');
  await page.reload();
  await expect(page.getByTestId(`schedule-${name}`)).not.toContainText('never');
  await page.getByTestId(`schedule-${name}`).getByRole('button', { name: 'Remove' }).click();
  await expect(page.getByRole('status')).toContainText(`Job ${name} removed`);

  // vm02's data disk changes and is backed up again: its old backup alone needs the old blocks.
  const disk = path.join(e2eHome(), 'fleet', 'libvirt', 'images', 'vm02-data.raw');
  const handle = fs.openSync(disk, 'r+');
  fs.writeSync(handle, Buffer.alloc(1024 * 1024, Date.now() % 251), 0, 1024 * 1024, 0);
  fs.closeSync(handle);
  vmdedup(['backup', '--source', 'kvm', '--vm', 'vm02']);

  await page.getByLabel('Prune keep last').fill('1');
  await page.getByLabel('Prune source').selectOption('kvm');
  await page.getByLabel('Prune VMs').fill('vm02');
  await page.getByRole('button', { name: 'Preview' }).click();
  const preview = page.getByTestId('prune-preview');
  await expect(preview).toContainText('kvm/vm02');
  await expect(preview.getByText(/· last$/)).toHaveCount(1);
  await expect(page.getByTestId('prune-frees')).not.toHaveText('0 B');
  const removeButton = preview.getByRole('button', { name: /^Remove \d+ backups and collect garbage$/ });
  await removeButton.click();
  await expect(page.getByRole('status')).toContainText('Prune queued');
  const pruneJob = page.getByTestId('job').filter({ hasText: 'Prune and collect garbage' }).first();
  await expect(pruneJob.getByTestId('job-state')).toHaveText('succeeded', { timeout: 60_000 });
  await expect(pruneJob).toContainText(/backups removed, 1 kept; [1-9][\d.]* (KiB|MiB|GiB) freed/);
  const backups = JSON.parse(vmdedup(['backups', '--vm', 'vm02', '--json'])) as { backups: { source: string }[] };
  expect(backups.backups.filter((b) => b.source === 'kvm')).toHaveLength(1);
});

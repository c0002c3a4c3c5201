import { formatBytes } from '../lib/format';
import path from 'node:path';
import { ADMIN, e2eHome, expect, signIn, test, vmdedup } from './fixtures';

test('the overview shows the common disks and the savings the CLI reports', async ({ page }, testInfo) => {
  const stats = JSON.parse(vmdedup(['stats', '--json']));

  await signIn(page, ADMIN);
  await page.goto('/');
  const commonDisks = page.getByRole('region', { name: 'Common disks' });
  // The fleet that e2e/serve.sh backed up (other specs may add sources of their own).
  const configRow = commonDisks.getByRole('row').filter({ hasText: path.join(e2eHome(), 'fleet', 'libvirt', 'images', 'site-config.raw') });
  await expect(configRow).toContainText('vm01, vm02, vm03');
  await expect(commonDisks.getByRole('row').filter({ hasText: 'gold.vmdk' })).toContainText('app1, app2');
  await expect(page.getByTestId('saved-common')).toContainText(formatBytes(stats.savedByCommonDisks));
  await expect(page.getByTestId('stored-bytes')).toContainText(formatBytes(stats.storedBytes));
  await expect(page.getByTestId('vms-protected')).toContainText(`${stats.vmsProtected} / ${stats.vms}`);
  await page.screenshot({ path: testInfo.outputPath('overview.png'), fullPage: true });
});

test('the Overview says what is overdue, and the VMs page shows each VM\'s last good backup, verify state and next run', async ({ page }) => {
  // A backup job for kvm's vm03 with an RPO it cannot meet (about a second): vm03 is overdue at once.
  const name = `rpo-${Date.now() % 100000}`;
  vmdedup(['job', 'add', name, '--schedule', '0 2 * * *', '--time-zone', 'UTC', '--source', 'kvm', '--vm', 'vm03', '--rpo-hours', '0.0003']);
  try {
    await signIn(page, ADMIN);
    await page.goto('/');
    const overdue = page.getByRole('region', { name: 'Overdue' });
    await expect(overdue.getByTestId('overdue-rpo').filter({ hasText: 'kvm/vm03' })).toContainText(`no good backup within the RPO (0.0003 h of job ${name})`);

    await page.goto('/vms');
    const vm03 = page.getByTestId('vm-kvm-vm03');
    await expect(vm03.getByTestId('last-good')).not.toHaveText('never');
    await expect(vm03.getByTestId('verify')).toContainText(/ok|failed|not verified/);
    await expect(vm03.getByTestId('next-run')).toContainText(`past RPO: 0.0003 h (${name})`);
    await expect(page.getByTestId('vm-kvm-vm01').getByTestId('next-run')).toHaveText('no schedule');
    await page.getByLabel('State').selectOption('overdue');
    await expect(vm03).toBeVisible();
    await expect(page.getByTestId('vm-kvm-vm01')).toHaveCount(0);
  } finally {
    vmdedup(['job', 'remove', name]);
  }
});

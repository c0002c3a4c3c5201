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

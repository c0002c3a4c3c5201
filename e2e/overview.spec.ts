import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { expect, test } from '@playwright/test';
import { formatBytes } from '../lib/cli/format';

test('the overview shows the common disks and the savings the CLI reports', async ({ page }, testInfo) => {
  const consoleErrors: string[] = [];
  page.on('console', (message) => { if (message.type() === 'error') consoleErrors.push(message.text()); });
  page.on('pageerror', (error) => consoleErrors.push(error.message));

  const home = fs.readFileSync('test-results/e2e-home', 'utf8').trim();
  const stats = JSON.parse(execFileSync(process.execPath, ['bin/vmdedup.mjs', 'stats', '--json'], { env: { ...process.env, VMDEDUP_HOME: home, DATABASE_URL: '' } }).toString());

  await page.goto('/');
  const commonDisks = page.getByRole('region', { name: 'Common disks' });
  const configRow = commonDisks.getByRole('row').filter({ hasText: 'site-config.raw' });
  await expect(configRow).toContainText('vm01, vm02, vm03');
  await expect(commonDisks.getByRole('row').filter({ hasText: 'gold.vmdk' })).toContainText('app1, app2');
  await expect(page.getByTestId('saved-common')).toContainText(formatBytes(stats.savedByCommonDisks));
  await expect(page.getByTestId('stored-bytes')).toContainText(formatBytes(stats.storedBytes));
  await expect(page.getByTestId('vms-protected')).toContainText(`${stats.vmsProtected} / ${stats.vms}`);
  await page.screenshot({ path: testInfo.outputPath('overview.png'), fullPage: true });
  expect(consoleErrors).toEqual([]);
});

/**
 * Restore in the browser: drift shown in words, explicit confirmation, approval by a second person with the
 * approver role, execution as a job, files checked on disk; refusals on the server for the requester's own
 * approval and for a viewer; an in-place overwrite listing every affected VM; a state change after
 * confirmation shown to the approver, and a state change between approval and execution, each stopping
 * the restore before anything is written.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Page, Request } from '@playwright/test';
import { overwrite } from '../lib/demo/fleet';
import { buildFleet } from '../lib/demo/fleet';
import { ADMIN, e2eHome, ensureUser, expect, pauseWorker, signIn, test, vmdedup } from './fixtures';

const source = `rst${Date.now() % 100000}`;
let images: string;
let libvirtDir: string;

test.beforeAll(async () => {
  const fleet = await buildFleet({ dir: path.join(e2eHome(), source), bases: 1, clonesPerBase: 3, baseMiB: 16, configDiskMiB: 4, privateDiskMiB: 8, vmwareVms: 0, seed: 11 });
  libvirtDir = fleet.libvirtDir;
  images = path.join(libvirtDir, 'images');
  vmdedup(['source', 'add', source, '--type', 'libvirt', '--path', libvirtDir]);
  vmdedup(['backup', '--source', source]);
  // After the backup the shared configuration disk is modified: drift for every restore of these VMs.
  await overwrite(path.join(images, 'site-config.raw'), 0, 4096, 3);
});

/** Fills the wizard up to the plan; returns the page showing it. */
async function planRestore(page: Page, options: { target: string | 'in-place'; policy?: 'overwrite' }): Promise<void> {
  await page.goto('/restores/new');
  await page.getByLabel('VM', { exact: true }).selectOption({ label: `vm01 (${source})` });
  await expect(page.getByRole('radio').first()).toBeChecked();
  if (options.target === 'in-place') await page.getByLabel('Into the original place').check();
  else await page.getByLabel('Target folder').fill(options.target);
  if (options.policy) await page.getByLabel('Policy', { exact: true }).selectOption(options.policy);
  await page.getByRole('button', { name: 'Plan the restore' }).click();
  await expect(page.getByTestId('plan-message')).toBeVisible();
}

/** An operator plans a folder restore of vm01, confirms the drift and asks for approval; returns the request's address. */
async function requestConfirmedRestore(page: Page, target: string): Promise<string> {
  await signIn(page, ensureUser('olga', 'operator'));
  await planRestore(page, { target });
  await page.getByLabel('I confirm').check();
  await page.getByRole('button', { name: 'Request approval' }).click();
  await expect(page).toHaveURL(/\/restores\/[0-9a-f-]{36}$/);
  return page.url();
}

/** A libvirt domain XML without its shared configuration disk. */
function withoutSharedConfigDisk(xml: string): string {
  const changed = xml.replace(/<disk type='file' device='disk'>\s*<driver name='qemu' type='raw'\/>\s*<source file='images\/site-config.raw'\/>[\s\S]*?<\/disk>/, '');
  if (changed === xml) throw new Error('the domain XML has no shared configuration disk to remove');
  return changed;
}

async function requestOf(page: Page, click: () => Promise<void>): Promise<Request> {
  const [request] = await Promise.all([page.waitForRequest((r) => r.method() === 'POST' && Boolean(r.headers()['next-action'])), click()]);
  return request;
}

async function replay(page: Page, request: Request, body: string): Promise<string> {
  const response = await page.request.post(request.url(), {
    // As the browser sends it (same-origin): the action's own role check is what is tested here.
    headers: { 'next-action': request.headers()['next-action'], 'content-type': request.headers()['content-type'], accept: 'text/x-component', origin: new URL(request.url()).origin },
    data: body,
  });
  return response.text();
}

test('drift → confirmation → another user approves → restored files verified; own approval and viewers refused', async ({ browser, page }, testInfo) => {
  test.setTimeout(120_000);
  const olga = ensureUser('olga', 'operator');
  const april = ensureUser('april', 'approver');
  const victor = ensureUser('victor', 'viewer');
  const target = path.join(e2eHome(), 'restores', `${source}-restore-a`);

  await signIn(page, olga);
  await planRestore(page, { target });
  await expect(page.getByTestId('plan-message')).toContainText('The shared disk site-config.raw (used by vm02 and vm03) was modified after this backup');
  await expect(page.getByRole('table', { name: 'Drift since the backup' })).toContainText('modified');
  // In words: when it changed and its size then and now, not version tokens.
  const details = page.getByRole('table', { name: 'Drift since the backup' }).getByTestId('drift-details');
  await expect(details).toContainText(/changed on \d{4}-\d{2}-\d{2} \d{2}:\d{2} .*\(backed up \d{4}-\d{2}-\d{2}/);
  await expect(details).toContainText(/size [\d.]+ [KMG]i?B → [\d.]+ [KMG]i?B/);
  await expect(details).not.toContainText('version:');
  await expect(page.getByTestId('plan-approval')).toContainText('a common disk drifted since the backup');
  // Nothing runs until the user confirms, and the confirmation names what they agree to.
  await expect(page.getByRole('button', { name: 'Request approval' })).toBeDisabled();
  await expect(page.getByTestId('confirmation')).toContainText(`Restore vm01 from its backup`);
  await expect(page.getByTestId('confirmation')).toContainText(`into ${target} under policy no-overwrite, choice reattach`);
  await page.getByLabel('I confirm').check();
  const requestCall = await requestOf(page, () => page.getByRole('button', { name: 'Request approval' }).click());
  await expect(page).toHaveURL(/\/restores\/[0-9a-f-]{36}$/);
  const requestUrl = page.url();
  await expect(page.getByTestId('request-status')).toHaveText('awaiting-approval');
  await expect(page.getByRole('button', { name: 'Approve and restore' })).toHaveCount(0);

  // A viewer may not request: no button, a refusing page, and the server action refused on the server.
  const viewerContext = await browser.newContext();
  const viewerPage = await viewerContext.newPage();
  await signIn(viewerPage, victor);
  await viewerPage.goto('/restores');
  await expect(viewerPage.getByRole('link', { name: 'New restore' })).toHaveCount(0);
  await viewerPage.goto('/restores/new');
  await expect(viewerPage.getByTestId('not-allowed')).toBeVisible();
  expect(await replay(viewerPage, requestCall, requestCall.postData() ?? '')).toContain('FORBIDDEN');
  await viewerContext.close();

  // The approver sees the count in the navigation, the same plan re-evaluated live, and approves.
  const approverContext = await browser.newContext();
  const approverPage = await approverContext.newPage();
  await signIn(approverPage, april);
  await expect(approverPage.getByTestId('pending-approvals')).toBeVisible();
  await approverPage.goto(requestUrl);
  await expect(approverPage.getByTestId('live-plan-message')).toContainText('was modified after this backup');
  await expect(approverPage.getByTestId('live-changed')).toHaveCount(0);
  await approverPage.getByLabel('Note').fill('checked with the web team');
  const decideCall = await requestOf(approverPage, () => approverPage.getByRole('button', { name: 'Approve and restore' }).click());
  await expect(approverPage.getByTestId('job-state')).toHaveText('succeeded', { timeout: 60_000 });
  await expect(approverPage.getByTestId('request-status')).toHaveText('restored');
  await expect(approverPage.getByRole('row', { name: `restored ${path.join(target, 'images', 'vm01-data.raw')}` })).toContainText('every block checked');
  await approverPage.screenshot({ path: testInfo.outputPath('restore-approved.png'), fullPage: true });
  await approverContext.close();

  // The files on disk: the private disks as backed up, the VM pointing at the shared disk as it is now.
  expect(fs.readFileSync(path.join(target, 'images', 'vm01-data.raw')).equals(fs.readFileSync(path.join(images, 'vm01-data.raw')))).toBe(true);
  expect(fs.readFileSync(path.join(target, 'vm01.xml'), 'utf8')).toContain(`file='${fs.realpathSync(path.join(images, 'site-config.raw'))}'`);
  expect(fs.existsSync(path.join(target, 'images', 'site-config.raw'))).toBe(false);

  // The operator's own call to decide is refused on the server (the role), and so is an admin's decision
  // on their own request (four eyes), in the UI and on the server.
  expect(await replay(page, decideCall, decideCall.postData() ?? '')).toContain('FORBIDDEN');
  const adminContext = await browser.newContext();
  const adminPage = await adminContext.newPage();
  await signIn(adminPage, ADMIN);
  await planRestore(adminPage, { target: path.join(e2eHome(), 'restores', `${source}-restore-admin`) });
  await adminPage.getByLabel('I confirm').check();
  await adminPage.getByRole('button', { name: 'Request approval' }).click();
  await expect(adminPage).toHaveURL(/\/restores\/[0-9a-f-]{36}$/);
  await expect(adminPage.getByTestId('waiting')).toContainText('You asked for this restore: another approver must decide.');
  await expect(adminPage.getByRole('button', { name: 'Approve and restore' })).toHaveCount(0);
  const ownId = adminPage.url().split('/').pop()!;
  const firstId = requestUrl.split('/').pop()!;
  expect(await replay(adminPage, decideCall, (decideCall.postData() ?? '').replace(firstId, ownId))).toContain('cannot approve or reject your own');
  await expect(adminPage.getByTestId('request-status')).toHaveText('awaiting-approval');

  // The audit log has every step, with who.
  const audit = await (await adminPage.request.get('/api/audit?action=restore.')).text();
  expect(audit).toContain(',olga,restore.request,vm01');
  expect(audit).toContain(',april,restore.approve,vm01');
  expect(audit).toContain(',worker,restore.finished,vm01');
  await adminContext.close();
});

test('an in-place overwrite of a common disk lists every VM it affects and needs approval', async ({ page }) => {
  await signIn(page, ensureUser('olga', 'operator'));
  // From the VM's page, the wizard starts with that VM chosen.
  await page.goto(`/vms/${source}/vm01`);
  await page.getByRole('link', { name: 'Restore…' }).click();
  await expect(page.getByLabel('VM', { exact: true })).toHaveValue(JSON.stringify([source, 'vm01']));
  await expect(page.getByRole('radio').first()).toBeChecked();
  // The target folder is filled in with a folder under the restore root named after the VM: Plan works at once.
  await expect(page.getByLabel('Target folder')).toHaveValue(/\/restores\/vm01-\d{8}T\d{6}Z$/);
  await expect(page.getByRole('button', { name: 'Plan the restore' })).toBeEnabled();
  await planRestore(page, { target: 'in-place', policy: 'overwrite' });
  await expect(page.getByTestId('plan-message')).toContainText('Policy overwrite writes the shared disks');
  await expect(page.getByTestId('plan-message')).toContainText('vm02 and vm03 use them');
  await expect(page.getByTestId('plan-approval')).toContainText('it restores into the original place');
  await expect(page.getByTestId('plan-approval')).toContainText('it overwrites a common disk');
  await expect(page.getByRole('row', { name: new RegExp(`disk .*${source}.*site-config\\.raw`) })).toContainText('overwritten in place');
});

test('a state change after confirmation is shown to the approver, who cannot approve it; nothing is written', async ({ browser, page }) => {
  test.setTimeout(120_000);
  const target = path.join(e2eHome(), 'restores', `${source}-restore-b`);
  const requestUrl = await requestConfirmedRestore(page, target);

  // vm02 stops using the shared disk after the operator confirmed.
  const vm02 = path.join(libvirtDir, 'vm02.xml');
  const original = fs.readFileSync(vm02, 'utf8');
  fs.writeFileSync(vm02, withoutSharedConfigDisk(original));
  try {
    const approverContext = await browser.newContext();
    const approverPage = await approverContext.newPage();
    await signIn(approverPage, ensureUser('april', 'approver'));
    await approverPage.goto(requestUrl);
    await expect(approverPage.getByTestId('live-changed')).toContainText('cannot be approved as it is');
    // Approve would only queue a restore that stops: not offered. Reject is.
    await expect(approverPage.getByRole('button', { name: 'Approve and restore' })).toBeDisabled();
    await approverPage.getByRole('button', { name: 'Reject' }).click();
    await expect(approverPage.getByTestId('request-status')).toHaveText('rejected');
    await approverContext.close();
    expect(fs.existsSync(target)).toBe(false);
  } finally {
    fs.writeFileSync(vm02, original);
  }
});

test('a requester withdraws their own request; the approver then has nothing to decide', async ({ browser, page }) => {
  test.setTimeout(120_000);
  const target = path.join(e2eHome(), 'restores', `${source}-restore-w`);
  const requestUrl = await requestConfirmedRestore(page, target);
  await page.getByRole('button', { name: 'Withdraw request' }).click();
  await expect(page.getByTestId('request-status')).toHaveText('withdrawn');
  await expect(page.getByTestId('decision')).toContainText('Withdrawn by olga');
  await expect(page.getByRole('button', { name: 'Withdraw request' })).toHaveCount(0);

  const approverContext = await browser.newContext();
  const approverPage = await approverContext.newPage();
  await signIn(approverPage, ensureUser('april', 'approver'));
  await approverPage.goto(requestUrl);
  await expect(approverPage.getByTestId('request-status')).toHaveText('withdrawn');
  await expect(approverPage.getByRole('button', { name: 'Approve and restore' })).toHaveCount(0);
  await expect(approverPage.getByRole('button', { name: 'Withdraw request' })).toHaveCount(0);
  await approverContext.close();
  expect(fs.existsSync(target)).toBe(false);
});

test('a state change between approval and execution stops the restore before anything is written', async ({ browser, page }) => {
  test.setTimeout(120_000);
  const target = path.join(e2eHome(), 'restores', `${source}-restore-c`);
  const requestUrl = await requestConfirmedRestore(page, target);

  const approverContext = await browser.newContext();
  const approverPage = await approverContext.newPage();
  await signIn(approverPage, ensureUser('april', 'approver'));
  await approverPage.goto(requestUrl);
  await expect(approverPage.getByTestId('live-changed')).toHaveCount(0);
  // The worker is held while the approval is given, so the change lands after approval, before execution; a
  // calls-only worker answers the approval's planning meanwhile.
  const resumeWorker = pauseWorker({ keepCalls: true });
  const vm02 = path.join(libvirtDir, 'vm02.xml');
  const original = fs.readFileSync(vm02, 'utf8');
  try {
    await approverPage.getByRole('button', { name: 'Approve and restore' }).click();
    await expect(approverPage.getByTestId('request-status')).toHaveText('approved');
    // vm02 stops using the shared disk: the plan (who uses it now) is no longer the one approved.
    fs.writeFileSync(vm02, withoutSharedConfigDisk(original));
  } finally {
    resumeWorker();
  }
  try {
    await expect(approverPage.getByTestId('request-status')).toHaveText('changed', { timeout: 60_000 });
    await expect(approverPage.getByTestId('request-error')).toContainText('The live state changed since this restore was confirmed; nothing was written');
    expect(fs.existsSync(target)).toBe(false);
  } finally {
    fs.writeFileSync(vm02, original);
    await approverContext.close();
  }
});

import fs from 'node:fs';
import path from 'node:path';
import { ADMIN, PASSWORD, e2eHome, ensureUser, expect, signIn, signInHere, test, vmdedup } from './fixtures';

test('signed out, every page leads to sign-in and back; wrong passwords are refused and then lock the account', async ({ page }) => {
  await page.goto('/backups');
  await expect(page).toHaveURL(/\/sign-in/);
  expect((await page.request.get('/api/jobs')).status()).toBe(401);
  // Security headers on pages and routes: a nonce-based CSP, no framing, no sniffing, no referrer to other sites.
  for (const url of ['/sign-in', '/api/jobs']) {
    const headers = (await page.request.get(url)).headers();
    expect(headers['content-security-policy'], url).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9+/=]+' 'strict-dynamic'/);
    expect(headers['content-security-policy'], url).toContain("frame-ancestors 'none'");
    expect(headers).toMatchObject({ 'x-content-type-options': 'nosniff', 'referrer-policy': 'same-origin', 'x-frame-options': 'DENY' });
  }
  // Pages and routes signed out, with every partial-render header: e2e/access.spec.ts (a check here only ever
  // reached Next's _rsc redirect, so it could not fail).
  // A state-changing request from another site, one that claims this host through X-Forwarded-Host, or one
  // without any Origin is refused before it reaches a server action.
  const here = new URL(page.url()).origin;
  expect((await page.request.post('/sources', { headers: { Origin: 'http://evil.example' }, data: 'x' })).status()).toBe(403);
  expect((await page.request.post('/sources', { headers: { Origin: 'http://evil.example', 'X-Forwarded-Host': 'evil.example' }, data: 'x' })).status()).toBe(403);
  expect((await page.request.post('/sources', { data: 'x' })).status()).toBe(403);
  expect((await page.request.post('/sources', { headers: { Origin: here }, data: 'x' })).status()).not.toBe(403);

  const user = ensureUser('locky', 'viewer');
  for (let attempt = 1; attempt <= 5; attempt++) {
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password').fill('not the password');
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/sign-in')),
      page.getByRole('button', { name: 'Sign in', exact: true }).click(),
    ]);
    // The same answer every time: it never tells a locked account from a wrong password or an unknown name.
    await expect(page.getByTestId('sign-in-error')).toContainText('Wrong username, password or code');
    // React resets the form once the answer is shown: type the next attempt only after that.
    await expect(page.getByLabel('Password')).toHaveValue('');
  }
  // Locked: even the right password is refused until an admin resets it, with that same answer. (The form is
  // reset after each attempt: the name is typed again, else the browser never sends it.)
  await page.getByLabel('Username').fill(user.username);
  await page.getByLabel('Password').fill(user.password);
  await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/sign-in')),
    page.getByRole('button', { name: 'Sign in', exact: true }).click(),
  ]);
  await expect(page).toHaveURL(/\/sign-in/);
  await expect(page.getByTestId('sign-in-error')).toContainText('Wrong username, password or code');
  expect(JSON.parse(vmdedup(['user', 'list', '--json'])).users.find((u: { username: string }) => u.username === 'locky').locked).toBe(true);

  // A link followed while signed out (an approver's link to a request) comes back to its page after sign-in;
  // a callback to another site is not followed.
  await page.goto('/audit?action=sign-in');
  await expect(page).toHaveURL(/\/sign-in\?callbackUrl=%2Faudit%3Faction%3Dsign-in$/);
  await signInHere(page, ADMIN);
  await expect(page).toHaveURL(/\/audit\?action=sign-in$/);
  await page.context().clearCookies();
  await page.goto('/sign-in?callbackUrl=https%3A%2F%2Fexample.com%2F');
  await signInHere(page, ADMIN);
  await expect(page).toHaveURL(/^http:\/\/127\.0\.0\.1:\d+\/$/);
});

test('a viewer reads but cannot back up, not even by calling the server action directly', async ({ browser, page }) => {
  const operator = ensureUser('olga', 'operator');
  const viewer = ensureUser('victor', 'viewer');

  // The operator's click shows what the "Back up now" server action request looks like.
  await signIn(page, operator);
  await page.goto('/backups');
  await page.getByLabel('What to back up').selectOption({ label: 'vm02' });
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && Boolean(r.headers()['next-action'])),
    page.getByRole('button', { name: 'Back up now' }).click(),
  ]);
  await expect(page.getByRole('status')).toContainText(/queued/);

  const viewerContext = await browser.newContext();
  const viewerPage = await viewerContext.newPage();
  await signIn(viewerPage, viewer);
  await expect(viewerPage.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Users' })).toHaveCount(0);
  await viewerPage.goto('/backups');
  await expect(viewerPage.getByRole('heading', { name: 'Jobs', exact: true })).toBeVisible();
  await expect(viewerPage.getByRole('button', { name: 'Back up now' })).toHaveCount(0);
  await viewerPage.goto('/users');
  await expect(viewerPage.getByTestId('not-allowed')).toContainText('viewer');

  const jobsBefore = ((await (await viewerPage.request.get('/api/jobs')).json()) as { jobs: unknown[] }).jobs.length;
  const replay = await viewerPage.request.post(request.url(), {
    // As the browser sends it (same-origin): the action's own role check is what is tested here.
    headers: { 'next-action': request.headers()['next-action'], 'content-type': request.headers()['content-type'], accept: 'text/x-component', origin: new URL(request.url()).origin },
    data: request.postData() ?? '',
  });
  expect(await replay.text()).toContain('FORBIDDEN');
  const jobsAfter = ((await (await viewerPage.request.get('/api/jobs')).json()) as { jobs: unknown[] }).jobs.length;
  expect(jobsAfter).toBe(jobsBefore);
  await viewerContext.close();
});

test('an operator backs up a changed VM and watches its job reach the end', async ({ page }, testInfo) => {
  const operator = ensureUser('olga', 'operator');
  // A changed private disk makes the backup read and store it.
  const disk = path.join(e2eHome(), 'fleet', 'libvirt', 'images', 'vm01-data.raw');
  const handle = fs.openSync(disk, 'r+');
  fs.writeSync(handle, Buffer.from(`changed by the e2e test at ${Date.now()}`), 0, undefined, 4096);
  fs.closeSync(handle);
  const imagesBefore = JSON.parse(vmdedup(['backups', '--vm', 'vm01', '--json'])).backups.length;

  await signIn(page, operator);
  await page.goto('/backups');
  await page.getByLabel('What to back up').selectOption({ label: 'vm01' });
  await page.getByRole('button', { name: 'Back up now' }).click();
  const job = page.getByTestId('job').filter({ hasText: 'Back up vm01' }).first();
  await expect(job.getByTestId('job-state')).toHaveText('succeeded', { timeout: 60_000 });
  await expect(job.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '100');
  await expect(job).toContainText('1 VM backed up');
  const backups = JSON.parse(vmdedup(['backups', '--vm', 'vm01', '--json'])).backups;
  expect(backups.length).toBe(imagesBefore + 1);
  // The new image shows up in the page's list once the job ends.
  await expect(page.getByRole('row').filter({ hasText: backups[0].backupId })).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath('backups.png'), fullPage: true });
});

test('an admin adds a user, changes their role, and disabling them ends their session at once', async ({ browser, page }) => {
  const name = `user${Date.now() % 100000}`;
  await signIn(page, ADMIN);
  await page.goto('/users');
  const form = page.getByRole('form', { name: 'Add a user' });
  await form.getByLabel('Username').fill(name);
  await form.getByLabel('Role').selectOption('viewer');
  await form.getByLabel('Password').fill('short');
  await form.getByRole('button', { name: 'Add user' }).click();
  // The browser refuses a too-short password before the server sees it; a long one goes through.
  await form.getByLabel('Password').fill(PASSWORD);
  await form.getByRole('button', { name: 'Add user' }).click();
  await expect(page.getByRole('status')).toContainText(`User ${name} added`);
  const row = page.getByRole('row', { name: `user ${name}` });
  await row.getByLabel(`Role of ${name}`).selectOption('operator');
  await expect(page.getByRole('status')).toContainText(`${name} is now operator`);

  const theirContext = await browser.newContext();
  const theirPage = await theirContext.newPage();
  await signIn(theirPage, { username: name, password: PASSWORD });
  await theirPage.goto('/backups');
  await expect(theirPage.getByRole('button', { name: 'Back up now' })).toBeVisible();

  await row.getByRole('button', { name: 'Disable' }).click();
  await expect(page.getByRole('status')).toContainText(`${name} disabled`);
  await theirPage.reload();
  await expect(theirPage).toHaveURL(/\/sign-in/);
  await theirContext.close();

  // The last admin cannot remove themselves from power.
  await page.getByRole('row', { name: 'user admin' }).getByLabel('Role of admin').selectOption('viewer');
  await expect(page.getByRole('status')).toContainText('last enabled admin');
});

test('an approver reads the audit log (and exports it) but cannot back up; signing out ends the session, also for a copy of its cookie', async ({ page }) => {
  const approver = ensureUser('april', 'approver');
  await signIn(page, approver);
  const nav = page.getByRole('navigation', { name: 'Main' });
  await expect(nav.getByRole('link', { name: 'Audit log' })).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Users' })).toHaveCount(0);
  await page.goto('/backups');
  await expect(page.getByRole('button', { name: 'Back up now' })).toHaveCount(0);
  await page.goto('/audit?action=sign-in');
  await expect(page.getByRole('row').filter({ hasText: 'april' }).first()).toBeVisible();
  const csv = await (await page.request.get('/api/audit')).text();
  expect(csv.split('\r\n')[0]).toBe('id,at,actor,action,target,detail');
  expect(csv).toContain('sign-in');

  // A copy of the session cookie (as a thief, or a shared machine's browser, would keep it) works until sign-out...
  const base = new URL(page.url()).origin;
  const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  const replay = (path: string) => fetch(`${base}${path}`, { headers: { cookie }, redirect: 'manual' });
  expect((await replay('/api/audit')).status).toBe(200);

  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in/);
  await page.goto('/audit');
  await expect(page).toHaveURL(/\/sign-in/);
  expect((await page.request.get('/api/audit')).status()).toBe(401);
  // ... and not after: the server revoked that session, it did not only clear the browser's cookie.
  expect((await replay('/api/audit')).status).toBe(401);
  expect((await replay('/api/jobs')).status).toBe(401);
  expect((await replay('/audit')).headers.get('location') ?? '').toMatch(/\/sign-in/);
  expect(await (await replay('/api/auth/session')).json()).toBeNull();
});

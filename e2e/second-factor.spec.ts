/**
 * Two-step sign-in (TOTP) in the browser: a user sets it up on their account page with a code computed here by
 * the same library an authenticator app implements (otplib), signs in with password and code, is refused alike
 * for a missing, spent or replayed code, turns it off with password and code; an admin resets it. A second web
 * server on the same catalog with VMDEDUP_REQUIRE_2FA=1 sends an admin without a second factor to enrolment from
 * every page and refuses their server actions and API calls until they enrol.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import type { Page } from '@playwright/test';
import { generate } from 'otplib';
import { ADMIN, e2eHome, ensureUser, expect, signIn, test } from './fixtures';

const STEP_SECONDS = 30;
const stepNow = () => Math.floor(Date.now() / 1000 / STEP_SECONDS);
/** The code of time step `step`, as an authenticator app would show it then. */
const codeAt = (secret: string, step: number) => generate({ secret, epoch: step * STEP_SECONDS + 1 });

async function signInWith(page: Page, user: { username: string; password: string }, code?: string): Promise<void> {
  await page.getByLabel('Username').fill(user.username);
  await page.getByLabel('Password').fill(user.password);
  if (code !== undefined) await page.getByLabel('Authentication code').fill(code);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

async function expectRefused(page: Page, user: { username: string; password: string }, code?: string): Promise<void> {
  await page.goto('/sign-in');
  await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/sign-in')),
    signInWith(page, user, code),
  ]);
  await expect(page.getByTestId('sign-in-error')).toHaveText(/^Wrong username, password or code\./);
}

async function signOut(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in/);
}

/** Sets up two-step sign-in on the account page open now; returns the secret shown. */
async function enrol(page: Page, username: string, confirmStep: (secret: string) => Promise<string>, options: { started?: boolean } = {}): Promise<string> {
  if (!options.started) await page.getByRole('button', { name: 'Set up two-step sign-in' }).click();
  const secret = (await page.getByTestId('totp-secret').textContent())!.trim();
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  await expect(page.getByTestId('totp-uri')).toHaveText(`otpauth://totp/vmdedup:${username}?secret=${secret}&issuer=vmdedup`);
  await expect(page.getByRole('img', { name: 'QR code for your authenticator app' })).toHaveAttribute('src', /^data:image\/svg\+xml;base64,/);
  const confirm = page.getByRole('form', { name: 'Confirm two-step sign-in' });
  await confirm.getByLabel('The code your app shows now').fill(await confirmStep(secret));
  await confirm.getByRole('button', { name: 'Turn on' }).click();
  await expect(page.getByRole('status')).toHaveText('Two-step sign-in is on: from now on, signing in asks for a code.');
  await expect(page.getByTestId('second-factor-on')).toBeVisible();
  return secret;
}

test('a user sets up two-step sign-in, signs in with a computed code once per code, turns it off; an admin resets it', async ({ browser, page }) => {
  test.setTimeout(120_000);
  const run = Date.now() % 100000;
  const user = ensureUser(`tia${run}`, 'operator');
  await signIn(page, user);
  await page.getByTestId('signed-in-as').click();
  await expect(page.getByRole('heading', { name: 'Your account' })).toBeVisible();

  // A wrong code does not turn it on; the previous step's code (still accepted, a phone's clock may lag) does.
  await page.getByRole('button', { name: 'Set up two-step sign-in' }).click();
  const first = page.getByRole('form', { name: 'Confirm two-step sign-in' });
  await first.getByLabel('The code your app shows now').fill('000000');
  await first.getByRole('button', { name: 'Turn on' }).click();
  await expect(page.getByRole('status')).toContainText('That code does not match');
  const step = stepNow();
  const secret = await enrol(page, user.username, async (shown) => codeAt(shown, step - 1), { started: true });
  await signOut(page);

  // Password alone, the spent confirmation code, a wrong code: one answer, the wrong password's.
  await expectRefused(page, user);
  await expectRefused(page, user, await codeAt(secret, step - 1));
  await expectRefused(page, { ...user, password: 'not the password' }, await codeAt(secret, step));
  await page.goto('/sign-in');
  await signInWith(page, user, await codeAt(secret, step));
  await expect(page.getByTestId('signed-in-as')).toContainText(user.username);
  await signOut(page);
  // The same code again, right after: refused; the next step's code (the phone's clock ahead) is good.
  await expectRefused(page, user, await codeAt(secret, step));
  await page.goto('/sign-in');
  await signInWith(page, user, await codeAt(secret, step + 1));
  await expect(page.getByTestId('signed-in-as')).toContainText(user.username);

  // Turning it off takes the password and a fresh code.
  await page.goto('/account');
  const off = page.getByRole('form', { name: 'Turn off two-step sign-in' });
  await off.getByLabel('Your password').fill(user.password);
  await off.getByLabel('Code from your app').fill(await codeAt(secret, step + 1));
  await off.getByRole('button', { name: 'Turn off' }).click();
  await expect(page.getByRole('status')).toHaveText('Wrong password or code: two-step sign-in stays on.');
  // A code newer than the last one used exists only once the clock reaches step + 1.
  await expect.poll(stepNow, { timeout: 35_000, intervals: [500] }).toBeGreaterThanOrEqual(step + 1);
  await off.getByLabel('Your password').fill(user.password);
  await off.getByLabel('Code from your app').fill(await codeAt(secret, step + 2));
  await off.getByRole('button', { name: 'Turn off' }).click();
  await expect(page.getByRole('status')).toHaveText('Two-step sign-in is off.');
  await expect(page.getByRole('button', { name: 'Set up two-step sign-in' })).toBeVisible();

  // On again; the phone is lost: an admin resets it, which ends the user's session, and the password is enough again.
  await enrol(page, user.username, async (shown) => codeAt(shown, stepNow()));
  const adminContext = await browser.newContext();
  const admin = await adminContext.newPage();
  await signIn(admin, ADMIN);
  await admin.goto('/users');
  const row = admin.getByRole('row', { name: `user ${user.username}` });
  await expect(row).toContainText('two-step sign-in');
  await row.getByRole('button', { name: 'Reset two-step sign-in' }).click();
  await expect(admin.getByRole('status')).toHaveText(`Two-step sign-in of ${user.username} removed; their sessions have ended.`);
  await expect(row).not.toContainText('two-step sign-in');
  const audit = await (await admin.request.get('/api/audit')).text();
  for (const action of ['user.2fa-enrol-failed', 'user.2fa-enrol', 'user.2fa-disable-failed', 'user.2fa-disable', 'user.2fa-reset']) {
    expect(audit.split('\r\n').some((line) => line.includes(`,${action},${user.username},`)), action).toBe(true);
  }
  expect(audit.split('\r\n').filter((line) => line.includes(`,sign-in.failed,${user.username},`)).map((line) => /reason""?:""?([^"]+)/.exec(line)?.[1]))
    .toEqual(expect.arrayContaining(['no code', 'code already used', 'wrong password']));
  await adminContext.close();
  await page.reload();
  await expect(page).toHaveURL(/\/sign-in/);
  await signInWith(page, user);
  await expect(page.getByTestId('signed-in-as')).toContainText(user.username);
});

/** A second web server on the e2e catalog, started as `npm start` starts one, with `env` added. */
async function startServer(port: number, env: Record<string, string>, log: string): Promise<ChildProcess> {
  const output = fs.openSync(log, 'w');
  const server = spawn(process.execPath, ['bin/start.mjs'], {
    env: { ...process.env, VMDEDUP_HOME: e2eHome(), DATABASE_URL: '', VMDEDUP_DEMO: '0', VMDEDUP_WORKER: '0', PORT: String(port), ...env },
    stdio: ['ignore', output, output], detached: true,
  });
  fs.closeSync(output);
  try {
    await expect.poll(async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/sign-in`)).status;
      } catch {
        return 0;
      }
    }, { timeout: 90_000, intervals: [500] }).toBe(200);
  } catch (err) {
    process.kill(-server.pid!, 'SIGTERM');
    throw err;
  }
  return server;
}

test('with VMDEDUP_REQUIRE_2FA=1 an admin without a second factor must enrol before anything else', async ({ browser, page }, testInfo) => {
  test.setTimeout(180_000);
  const port = Number(process.env.E2E_PORT ?? 3210) + 2;
  const base = `http://127.0.0.1:${port}`;
  const adele = ensureUser(`adele${Date.now() % 100000}`, 'admin');

  // What "Back up now" sends, seen on the ordinary server (same build, so the same action id).
  await signIn(page, ADMIN);
  await page.goto('/backups');
  await page.getByLabel('What to back up').selectOption({ label: 'vm02' });
  const [backupRequest] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && Boolean(r.headers()['next-action'])),
    page.getByRole('button', { name: 'Back up now' }).click(),
  ]);
  await expect(page.getByRole('status')).toContainText(/queued/);
  const jobs = async () => ((await (await page.request.get('/api/jobs')).json()) as { jobs: unknown[] }).jobs.length;
  const jobsBefore = await jobs();

  const server = await startServer(port, { VMDEDUP_REQUIRE_2FA: '1' }, testInfo.outputPath('require-2fa-server.log'));
  try {
    const context = await browser.newContext();
    const strict = await context.newPage();
    await strict.goto(`${base}/backups`);
    await expect(strict).toHaveURL(/\/sign-in\?callbackUrl=%2Fbackups$/);
    await signInWith(strict, adele);
    await expect(strict).toHaveURL(`${base}/account`);
    await expect(strict.getByTestId('second-factor-required')).toBeVisible();
    for (const path of ['/', '/backups', '/users', '/audit', '/restores']) {
      await strict.goto(`${base}${path}`);
      await expect(strict, path).toHaveURL(`${base}/account`);
    }
    const api = await strict.request.get(`${base}/api/jobs`);
    expect(api.status()).toBe(403);
    expect(await api.text()).toContain('set up two-step sign-in first');
    const replay = await strict.request.post(`${base}/backups`, {
      headers: { 'next-action': backupRequest.headers()['next-action'], 'content-type': backupRequest.headers()['content-type'], accept: 'text/x-component', origin: base },
      data: backupRequest.postData() ?? '',
    });
    expect(await replay.text()).toContain('SECOND_FACTOR_REQUIRED');
    expect(await jobs()).toBe(jobsBefore);

    // Enrolled: the rest of the dashboard opens.
    await enrol(strict, adele.username, async (secret) => codeAt(secret, stepNow()));
    await strict.goto(`${base}/backups`);
    await expect(strict.getByRole('heading', { name: 'Backups & jobs' })).toBeVisible();
    expect((await strict.request.get(`${base}/api/jobs`)).status()).toBe(200);
    await context.close();
  } finally {
    process.kill(-server.pid!, 'SIGTERM');
  }
  const audit = await (await page.request.get('/api/audit')).text();
  expect(audit.split('\r\n').some((line) => line.includes(`,${adele.username},denied,`) && line.includes('VMDEDUP_REQUIRE_2FA'))).toBe(true);
});

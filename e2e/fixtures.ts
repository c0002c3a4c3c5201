/**
 * Shared by the specs: the e2e server's home (its catalog, through the CLI), users of each role, signing
 * in through the real form, and a page that fails the test on any browser console error.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { type Page, test as base, expect } from '@playwright/test';

export const ADMIN = { username: 'admin', password: 'e2e-admin-password' };
export const PASSWORD = 'e2e-user-password-1';

export function e2eHome(): string {
  return fs.readFileSync('test-results/e2e-home', 'utf8').trim();
}

/** Runs the vmdedup CLI on the e2e server's data; returns stdout. */
export function vmdedup(args: string[], input?: string): string {
  return execFileSync(process.execPath, ['bin/vmdedup.mjs', ...args], {
    env: { ...process.env, VMDEDUP_HOME: e2eHome(), DATABASE_URL: '' }, input,
  }).toString();
}

/** Adds a user with PASSWORD unless one of that name exists (specs may run again on one server). */
export function ensureUser(username: string, role: 'viewer' | 'operator' | 'approver' | 'admin'): { username: string; password: string } {
  const users = JSON.parse(vmdedup(['user', 'list', '--json'])) as { users: { username: string }[] };
  if (users.users.some((u) => u.username === username)) vmdedup(['user', 'set-password', username, '--password-stdin'], PASSWORD);
  else vmdedup(['user', 'add', username, '--role', role, '--password-stdin'], PASSWORD);
  return { username, password: PASSWORD };
}

/**
 * Pauses the e2e server's job worker (SIGSTOP) so a spec can act between a job being queued and being run;
 * returns the function that lets it go on. The worker is the `bin/worker.mjs` process on this e2e home.
 */
export function pauseWorker(options: { keepCalls?: boolean } = {}): () => void {
  const home = e2eHome();
  const pids = fs.readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).filter((pid) => {
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      return cmdline.includes('bin/worker.mjs') && environ.includes(`VMDEDUP_HOME=${home}`);
    } catch {
      return false; // the process ended while it was looked at
    }
  }).map(Number);
  if (pids.length === 0) throw new Error(`no job worker runs on ${home}`);
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  // The web server's calls (restore plans) are still answered, by a worker that serves only them.
  const calls = options.keepCalls ? spawn(process.execPath, ['bin/worker.mjs', '--only', 'calls'], { env: { ...process.env, VMDEDUP_HOME: home }, stdio: 'ignore' }) : undefined;
  return () => {
    calls?.kill('SIGTERM');
    for (const pid of pids) process.kill(pid, 'SIGCONT');
  };
}

export async function signIn(page: Page, user: { username: string; password: string }): Promise<void> {
  await page.goto('/sign-in');
  await signInHere(page, user);
}

/** Signs in on the sign-in page already open (with the callback it was opened with). */
export async function signInHere(page: Page, user: { username: string; password: string }): Promise<void> {
  await page.getByLabel('Username').fill(user.username);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  // The first sign-in on a fresh server hashes (argon2) and loads its code: seconds on a busy 2-core machine.
  await expect(page.getByTestId('signed-in-as')).toContainText(user.username, { timeout: 15_000 });
}

/** Every spec's page: console errors and uncaught page errors fail the test at its end. */
export const test = base.extend<{ consoleErrors: string[] }>({
  consoleErrors: [async ({ page }, use) => {
    const errors: string[] = [];
    page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
    page.on('pageerror', (error) => errors.push(error.message));
    // The console names a failed resource without its address: record which one it was.
    page.on('response', (response) => { if (response.status() >= 400) errors.push(`${response.status()} ${response.url()}`); });
    await use(errors);
    expect(errors, 'browser console errors').toEqual([]);
  }, { auto: true }],
});

export { expect };

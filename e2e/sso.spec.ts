/**
 * Single sign-on through OpenID Connect, against the test identity provider (e2e/oidc-provider.ts): a user
 * whose email the provider vouches for signs in as the catalog user with that email, with that user's role,
 * and lands where they were going; an email no enabled user has is refused on the sign-in page and audited
 * until an admin gives that email to a user.
 */
import type { Page } from '@playwright/test';
import { ADMIN, ensureUser, expect, signIn, test } from './fixtures';
import { OIDC_CLIENT } from './oidc-client';

async function signInThroughProvider(page: Page, email: string): Promise<void> {
  await page.getByRole('button', { name: `Sign in with ${OIDC_CLIENT.name}` }).click();
  await expect(page.getByRole('heading', { name: 'Test identity provider' })).toBeVisible();
  await page.getByLabel('Email').fill(email);
  await page.getByRole('button', { name: 'Continue' }).click();
}

async function signOut(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in/);
}

test('single sign-on signs in the user with the vouched-for email, with their role; an unknown email is refused until an admin sets it', async ({ page }) => {
  const run = Date.now() % 100000;
  const vera = { username: `sso-vera${run}`, email: `vera${run}@example.test` };
  const stranger = `stranger${run}@example.test`;

  // An admin adds a user with an email and no password: single sign-on only.
  await signIn(page, ADMIN);
  await page.goto('/users');
  const form = page.getByRole('form', { name: 'Add a user' });
  await form.getByLabel('Username').fill(vera.username);
  await form.getByLabel('Email').fill(vera.email);
  await form.getByLabel('Role').selectOption('viewer');
  await form.getByRole('button', { name: 'Add user' }).click();
  await expect(page.getByRole('status')).toContainText(`User ${vera.username} added`);
  await expect(page.getByRole('row', { name: `user ${vera.username}` })).toContainText('single sign-on only');
  await signOut(page);

  // A signed-out visit to a page goes to sign-in, then through the identity provider, and back to that page.
  await page.goto('/savings');
  await expect(page).toHaveURL(/\/sign-in/);
  await signInThroughProvider(page, vera.email.toUpperCase());
  await expect(page.getByTestId('signed-in-as')).toContainText(vera.username);
  await expect(page).toHaveURL(/\/savings$/);
  // A viewer, as the catalog says: no backups from here.
  await page.goto('/backups');
  await expect(page.getByRole('heading', { name: 'Backups & jobs' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Back up now' })).toHaveCount(0);
  await signOut(page);

  // Nobody in the catalog has this email: refused, said on the sign-in page, no session.
  await signInThroughProvider(page, stranger);
  await expect(page).toHaveURL(/\/sign-in/);
  await expect(page.getByTestId('sso-error')).toContainText('no enabled vmdedup user has the email address');
  await page.goto('/');
  await expect(page).toHaveURL(/\/sign-in/);

  // An admin gives that email to an existing (password) user, who can then sign in either way.
  const sam = ensureUser(`sso-sam${run}`, 'operator');
  await signIn(page, ADMIN);
  await page.goto('/users');
  const samRow = page.getByRole('row', { name: `user ${sam.username}` });
  await samRow.getByRole('button', { name: 'Set email' }).click();
  await samRow.getByLabel(`Email of ${sam.username}`).fill(stranger);
  await samRow.getByRole('button', { name: 'Set', exact: true }).click();
  await expect(page.getByRole('status')).toContainText(`${sam.username} signs in by single sign-on as ${stranger}`);
  // The audit log has the refusal (with its reason) and the sign-in (with the provider that vouched).
  const csv = (await (await page.request.get('/api/audit')).text()).split('\r\n');
  expect(csv.some((line) => line.includes(`,sign-in.failed,${stranger},`) && line.includes('no user with this email'))).toBe(true);
  expect(csv.some((line) => line.includes(`,${vera.username},sign-in,`) && line.includes('127.0.0.1'))).toBe(true);
  await signOut(page);
  await signInThroughProvider(page, stranger);
  await expect(page.getByTestId('signed-in-as')).toContainText(sam.username);
});

/**
 * Single sign-on through OpenID Connect, against the test identity provider (e2e/oidc-provider.ts): a user
 * whose email the provider vouches for signs in as the catalog user with that email, with that user's role,
 * and lands where they were going; an email no enabled user has is refused on the sign-in page and audited.
 */
import { ADMIN, PASSWORD, expect, signIn, test, vmdedup } from './fixtures';
import { OIDC_CLIENT } from './oidc-client';

function ensureUserWithEmail(username: string, email: string): void {
  const users = JSON.parse(vmdedup(['user', 'list', '--json'])) as { users: { username: string }[] };
  if (!users.users.some((u) => u.username === username)) vmdedup(['user', 'add', username, '--role', 'viewer', '--email', email, '--password-stdin'], PASSWORD);
}

test('single sign-on signs in the user with the vouched-for email, with their role; an unknown email is refused', async ({ page }) => {
  ensureUserWithEmail('sso-vera', 'vera@example.test');

  // A signed-out visit to a page goes to sign-in, then through the identity provider, and back to that page.
  await page.goto('/savings');
  await expect(page).toHaveURL(/\/sign-in/);
  await page.getByRole('button', { name: `Sign in with ${OIDC_CLIENT.name}` }).click();
  await expect(page.getByRole('heading', { name: 'Test identity provider' })).toBeVisible();
  await page.getByLabel('Email').fill('Vera@Example.test');
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page.getByTestId('signed-in-as')).toContainText('sso-vera');
  await expect(page).toHaveURL(/\/savings$/);
  // A viewer, as the catalog says: no backups from here.
  await page.goto('/backups');
  await expect(page.getByRole('heading', { name: 'Backups & jobs' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Back up now' })).toHaveCount(0);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in/);

  // Nobody in the catalog has this email: refused, said on the sign-in page, no session.
  await page.getByRole('button', { name: `Sign in with ${OIDC_CLIENT.name}` }).click();
  await page.getByLabel('Email').fill('stranger@example.test');
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page).toHaveURL(/\/sign-in/);
  await expect(page.getByTestId('sso-error')).toContainText('no enabled vmdedup user has the email address');
  await page.goto('/');
  await expect(page).toHaveURL(/\/sign-in/);

  // Both are in the audit log, with the provider that vouched.
  await signIn(page, ADMIN);
  const csv = await (await page.request.get('/api/audit')).text();
  const lines = csv.split('\r\n');
  expect(lines.some((line) => line.includes(',sso-vera,sign-in,') && line.includes('127.0.0.1'))).toBe(true);
  expect(lines.some((line) => line.includes(',sign-in.failed,stranger@example.test,') && line.includes('no user with this email'))).toBe(true);
});

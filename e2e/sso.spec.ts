/**
 * Single sign-on through OpenID Connect, against the test identity provider (e2e/oidc-provider.ts): the first
 * sign-in of a subject links the catalog user whose email the provider vouches for as verified, with that user's
 * role, and lands where they were going; an email no enabled user has is refused on the sign-in page and audited
 * until an admin gives that email to a user. Later sign-ins go by (issuer, subject) alone; an unverified email, a
 * wrong or missing nonce and a wrong state are refused.
 */
import type { Page } from '@playwright/test';
import { ADMIN, ensureUser, expect, signIn, test, vmdedup } from './fixtures';
import { OIDC_CLIENT } from './oidc-client';

type Misbehaviour = { subject?: string; emailVerified?: 'true' | 'false' | 'missing' | 'string'; nonce?: 'as-asked' | 'wrong' | 'missing'; state?: 'as-asked' | 'wrong' };

async function signInThroughProvider(page: Page, email: string, misbehave: Misbehaviour = {}): Promise<void> {
  await page.getByRole('button', { name: `Sign in with ${OIDC_CLIENT.name}` }).click();
  await expect(page.getByRole('heading', { name: 'Test identity provider' })).toBeVisible();
  await page.getByLabel('Email', { exact: true }).fill(email);
  if (Object.keys(misbehave).length > 0) {
    await page.getByText('Misbehave (tests)').click();
    if (misbehave.subject) await page.getByLabel('Subject').fill(misbehave.subject);
    if (misbehave.emailVerified) await page.getByLabel('Email verified').selectOption(misbehave.emailVerified);
    if (misbehave.nonce) await page.getByLabel('Nonce').selectOption(misbehave.nonce);
    if (misbehave.state) await page.getByLabel('State').selectOption(misbehave.state);
  }
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
  await expect(page.getByTestId('sso-error')).toContainText('no enabled vmdedup user is linked to this identity');
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

test('single sign-on goes by the bound subject, never by email; unverified emails, wrong nonces and states are refused', async ({ page }) => {
  const run = Date.now() % 100000;
  const una = { username: `sso-una${run}`, email: `una${run}@example.test` };
  const ben = { username: `sso-ben${run}`, email: `ben${run}@example.test` };
  for (const user of [una, ben]) vmdedup(['user', 'add', user.username, '--role', 'viewer', '--email', user.email, '--sso-only']);
  const refusedWith = async (text: string) => {
    await expect(page).toHaveURL(/\/sign-in\?/);
    await expect(page.getByTestId('sso-error')).toContainText(text);
    expect(await (await page.request.get('/api/auth/session')).json()).toBeNull();
  };

  // Not verified: email_verified false, missing, or the string "true" — never a link by email.
  await page.goto('/sign-in');
  for (const emailVerified of ['false', 'missing', 'string'] as const) {
    await signInThroughProvider(page, una.email, { subject: `una-sub${run}`, emailVerified });
    await refusedWith('no enabled vmdedup user is linked to this identity');
  }
  // An ID token not bound to this browser's sign-in (wrong or no nonce), or an answer to another sign-in (state).
  for (const misbehave of [{ nonce: 'wrong' }, { nonce: 'missing' }, { state: 'wrong' }] as const) {
    await signInThroughProvider(page, una.email, { subject: `una-sub${run}`, ...misbehave });
    await refusedWith('Single sign-on failed');
  }
  expect(JSON.parse(vmdedup(['user', 'list', '--json'])).users.find((u: { username: string }) => u.username === una.username).singleSignOnBound).toBe(false);

  // The first verified sign-in binds this subject to una.
  await signInThroughProvider(page, una.email, { subject: `una-sub${run}` });
  await expect(page.getByTestId('signed-in-as')).toContainText(una.username);
  await page.goto('/account');
  await expect(page.getByRole('region', { name: 'Single sign-on' })).toContainText(`una-sub${run}`);
  await signOut(page);
  expect(JSON.parse(vmdedup(['user', 'list', '--json'])).users.find((u: { username: string }) => u.username === una.username).singleSignOnBound).toBe(true);

  // Later the provider says ben's email for una's subject (an email changed or forged at the provider): still una.
  await signInThroughProvider(page, ben.email, { subject: `una-sub${run}` });
  await expect(page.getByTestId('signed-in-as')).toContainText(una.username);
  await signOut(page);
  // Another subject with una's verified email: refused, una is bound to her own.
  await signInThroughProvider(page, una.email, { subject: `impostor${run}` });
  await refusedWith('no enabled vmdedup user is linked to this identity');

  const csv = vmdedup(['user', 'list']);
  expect(csv).toMatch(new RegExp(`${una.username}\\s+viewer\\s+${una.email}\\s+active\\s+-\\s+linked`));
  await signIn(page, ADMIN);
  const audit = (await (await page.request.get('/api/audit')).text()).split('\r\n');
  const refusals = audit.filter((line) => line.includes(',sign-in.failed,') && line.includes(una.email));
  expect(refusals.some((line) => line.includes('email not verified'))).toBe(true);
  expect(refusals.some((line) => line.includes('bound to another single sign-on identity'))).toBe(true);
  expect(audit.some((line) => line.includes(`,${una.username},user.sso-bound,${una.username},`))).toBe(true);
});

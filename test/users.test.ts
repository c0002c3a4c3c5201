/**
 * Dashboard users in the catalog: password and single-sign-on-only users, emails set and changed by admins,
 * and who may sign in how.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../lib/services/users/create-user';
import { listUsers } from '../lib/services/users/list-users';
import { updateUser } from '../lib/services/users/update-user';
import { signInWithOidc } from '../lib/services/users/sign-in-with-oidc';
import { signInWithPassword } from '../lib/services/users/sign-in-with-password';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { ZCreateUser, ZUpdateUser } from '../lib/validation/users';
import { createMigratedCatalog } from './helpers';

describe('users', () => {
  let db: PrismaClient;
  const PASSWORD = 'a-long-enough-password';
  const issuer = 'https://idp.example.test';
  /** The identity provider vouching for a verified email, with a subject of its own per address. */
  const sso = (email: string, subject = `sub-${email.trim().toLowerCase()}`) => signInWithOidc(db, { issuer, subject, email, emailVerified: true });

  beforeAll(async () => { db = (await createMigratedCatalog()).db; });
  afterAll(async () => { await db?.$disconnect(); });

  it('adds a user who signs in only by single sign-on, and refuses a user with neither password nor email', async () => {
    expect(ZCreateUser.safeParse({ username: 'nobody', role: 'viewer', email: '', password: '' }).error?.issues[0].message)
      .toBe('give a password, or an email address for single sign-on only');
    await createUser(db, { actor: 'admin', user: ZCreateUser.parse({ username: 'Vera', role: 'viewer', email: 'Vera@Example.TEST', password: '' }) });
    const vera = (await listUsers(db)).find((u) => u.username === 'vera')!;
    expect(vera).toMatchObject({ email: 'vera@example.test', hasPassword: false });
    // No password to guess; the identity provider's word for the email is the way in.
    expect((await signInWithPassword(db, { username: 'vera', password: '' })).ok).toBe(false);
    expect((await sso(' VERA@example.test '))?.username).toBe('vera');
    await expect(updateUser(db, { actor: 'admin', change: ZUpdateUser.parse({ userId: vera.id, email: '' }) })).rejects.toThrow(/has no password and signs in only by single sign-on/);
  });

  it('locks an account after five wrong passwords even when fifty are tried at once, and answers every refusal alike', async () => {
    await createUser(db, { actor: 'admin', user: ZCreateUser.parse({ username: 'lou', role: 'viewer', password: PASSWORD }) });
    const guesses = await Promise.all(Array.from({ length: 50 }, (_, i) => signInWithPassword(db, { username: 'lou', password: `guess-${i}` })));
    expect(guesses.every((g) => !g.ok)).toBe(true);
    const lou = await db.user.findUniqueOrThrow({ where: { username: 'lou' } });
    expect(lou.lockedUntil!.getTime()).toBeGreaterThan(Date.now());
    // The right password is refused now, with the same answer as an unknown name.
    const right = await signInWithPassword(db, { username: 'lou', password: PASSWORD });
    const unknown = await signInWithPassword(db, { username: 'nobody-at-all', password: PASSWORD });
    expect(right).toEqual({ ok: false, reason: 'invalid' });
    expect(unknown).toEqual(right);
    const reasons = (await db.auditEvent.findMany({ where: { target: 'lou' }, orderBy: { id: 'asc' } })).map((e) => (e.detail as { reason?: string }).reason);
    expect(reasons.filter((r) => r === 'wrong password')).toHaveLength(5);
    expect(reasons.filter((r) => r === 'locked').length).toBeGreaterThanOrEqual(46);
  });

  it('lets an admin set, change and remove an email; two users cannot share one', async () => {
    await createUser(db, { actor: 'admin', user: ZCreateUser.parse({ username: 'sam', role: 'operator', password: PASSWORD }) });
    const sam = (await listUsers(db)).find((u) => u.username === 'sam')!;
    expect(sam).toMatchObject({ email: null, hasPassword: true });
    expect(await sso('sam@example.test')).toBeUndefined();

    await updateUser(db, { actor: 'admin', change: ZUpdateUser.parse({ userId: sam.id, email: 'Sam@Example.test' }) });
    expect((await sso('sam@example.test'))?.username).toBe('sam');
    expect((await signInWithPassword(db, { username: 'sam', password: PASSWORD })).ok).toBe(true);
    await expect(updateUser(db, { actor: 'admin', change: ZUpdateUser.parse({ userId: sam.id, email: 'vera@example.test' }) })).rejects.toThrow('another user has the email vera@example.test');

    await updateUser(db, { actor: 'admin', change: ZUpdateUser.parse({ userId: sam.id, email: '' }) });
    expect((await listUsers(db)).find((u) => u.username === 'sam')!.email).toBeNull();
    expect(await sso('sam@example.test')).toBeUndefined();

    const changes = (await db.auditEvent.findMany({ where: { action: 'user.update', target: 'sam' }, orderBy: { id: 'asc' } })).map((e) => e.detail);
    // Sam had signed in by single sign-on, which bound him: removing his email unbinds that identity too.
    expect(changes).toEqual([
      { email: [null, 'sam@example.test'] },
      { email: ['sam@example.test', null], singleSignOnUnbound: { issuer, subject: 'sub-sam@example.test' } },
    ]);
  });
});

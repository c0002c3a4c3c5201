/**
 * Sign-in against a real catalog: the TOTP second factor (enrol, sign in, replay, lock, turn off, reset, sealed
 * secrets), single sign-on bound to (issuer, subject), and revoked sessions.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { currentTotpCode, openTotpSecret } from '../lib/auth/second-factor';
import { createUser } from '../lib/services/users/create-user';
import { updateUser } from '../lib/services/users/update-user';
import { beginSecondFactorEnrolment } from '../lib/services/users/begin-second-factor-enrolment';
import { confirmSecondFactor } from '../lib/services/users/confirm-second-factor';
import { disableSecondFactor } from '../lib/services/users/disable-second-factor';
import { loadAccount } from '../lib/services/users/load-account';
import { resetSecondFactor } from '../lib/services/users/reset-second-factor';
import { isSessionRevoked, revokeSession } from '../lib/catalog/sessions';
import { MAX_FAILED_SIGN_INS } from '../lib/services/users/count-failure';
import { signInWithOidc } from '../lib/services/users/sign-in-with-oidc';
import { signInWithPassword } from '../lib/services/users/sign-in-with-password';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../lib/generated/prisma/client';
import { ZCreateUser, ZUpdateUser } from '../lib/validation/users';
import { cli, createMigratedCatalog, createTestDatabase, tempDir } from './helpers';

const PASSWORD = 'a-long-enough-password';
const STEP_MS = 30_000;

describe('sign-in', () => {
  let db: PrismaClient;
  const savedSecret = process.env.AUTH_SECRET;

  beforeAll(async () => {
    process.env.AUTH_SECRET = 'test-auth-secret-for-sealing-totp-secrets';
    db = (await createMigratedCatalog()).db;
  });
  afterAll(async () => {
    process.env.AUTH_SECRET = savedSecret;
    await db?.$disconnect();
  });
  afterEach(() => { vi.useRealTimers(); });

  /** Freezes the clock 5 s into a TOTP time step, so codes of this and the neighbouring steps are known. */
  function freezeClock(): Date {
    const now = new Date(Math.floor(Date.now() / STEP_MS) * STEP_MS + 5_000);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(now);
    return now;
  }
  const at = (base: Date, steps: number) => new Date(base.getTime() + steps * STEP_MS);

  async function userWithSecondFactor(username: string, now: Date): Promise<{ id: string; secret: string }> {
    const { id } = await createUser(db, { actor: 'admin', user: ZCreateUser.parse({ username, role: 'admin', password: PASSWORD }) });
    await beginSecondFactorEnrolment(db, { userId: id });
    const account = await loadAccount(db, { userId: id });
    if (account.secondFactor.state !== 'enrolling') throw new Error('not enrolling');
    // Confirmed with the previous step's code (still accepted): the current step's code stays free for sign-in.
    await confirmSecondFactor(db, { userId: id, code: await currentTotpCode(account.secondFactor.secret, at(now, -1)) });
    return { id, secret: account.secondFactor.secret };
  }

  const reasons = async (target: string) => (await db.auditEvent.findMany({ where: { target }, orderBy: { id: 'asc' } }))
    .map((e) => `${e.action}${(e.detail as { reason?: string }).reason ? `: ${(e.detail as { reason?: string }).reason}` : ''}`);

  it('enrols a second factor with one valid code, shows it as text, URI and QR code, and keeps it sealed', async () => {
    const { id } = await createUser(db, { actor: 'admin', user: ZCreateUser.parse({ username: 'tess', role: 'operator', password: PASSWORD }) });
    expect((await loadAccount(db, { userId: id })).secondFactor).toEqual({ state: 'off' });
    await beginSecondFactorEnrolment(db, { userId: id });
    const account = await loadAccount(db, { userId: id });
    if (account.secondFactor.state !== 'enrolling') throw new Error(`state ${account.secondFactor.state}`);
    const { secret, uri, qrCode } = account.secondFactor;
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(uri).toBe(`otpauth://totp/vmdedup:tess?secret=${secret}&issuer=vmdedup`);
    expect(Buffer.from(qrCode.replace('data:image/svg+xml;base64,', ''), 'base64').toString()).toMatch(/^<svg /);
    // The catalog holds the secret sealed, never as it is.
    const row = await db.user.findUniqueOrThrow({ where: { id } });
    expect(row.totpSecret).not.toContain(secret);
    expect(row.totpEnabledAt).toBeNull();
    // Not yet confirmed: signing in still needs no code.
    expect((await signInWithPassword(db, { username: 'tess', password: PASSWORD })).ok).toBe(true);

    await expect(confirmSecondFactor(db, { userId: id, code: '000000' === (await currentTotpCode(secret)) ? '111111' : '000000' })).rejects.toThrow(/does not match/);
    await confirmSecondFactor(db, { userId: id, code: await currentTotpCode(secret) });
    expect((await loadAccount(db, { userId: id })).secondFactor.state).toBe('on');
    await expect(beginSecondFactorEnrolment(db, { userId: id })).rejects.toThrow(/on already/);
    expect(await reasons('tess')).toEqual(['user.create', 'sign-in', 'user.2fa-enrol-failed: wrong code', 'user.2fa-enrol']);
  });

  it('asks for the code after the right password: wrong, missing and replayed codes get the wrong password’s answer and count toward the lock', async () => {
    const now = freezeClock();
    const { id, secret } = await userWithSecondFactor('tom', now);
    const code = await currentTotpCode(secret, now);
    const wrongPassword = await signInWithPassword(db, { username: 'tom', password: 'not-the-password', code });
    const noCode = await signInWithPassword(db, { username: 'tom', password: PASSWORD });
    const wrongCode = await signInWithPassword(db, { username: 'tom', password: PASSWORD, code: code === '123456' ? '654321' : '123456' });
    const garbage = await signInWithPassword(db, { username: 'tom', password: PASSWORD, code: 'abc' });
    // The code the enrolment was confirmed with is spent.
    const confirmationCode = await signInWithPassword(db, { username: 'tom', password: PASSWORD, code: await currentTotpCode(secret, at(now, -1)) });
    for (const refusal of [noCode, wrongCode, garbage, confirmationCode]) expect(refusal).toEqual(wrongPassword);
    expect(wrongPassword).toEqual({ ok: false, reason: 'invalid' });
    expect(MAX_FAILED_SIGN_INS).toBe(5);
    expect((await db.user.findUniqueOrThrow({ where: { id } })).lockedUntil!.getTime()).toBeGreaterThan(Date.now());
    expect(await reasons('tom')).toEqual([
      'user.create', 'user.2fa-enrol', 'sign-in.failed: wrong password', 'sign-in.failed: no code', 'sign-in.failed: wrong code',
      'sign-in.failed: wrong code', 'user.locked: code already used',
    ]);
    // Five failures in a row locked the account: even the right password and a fresh code are refused now.
    expect(await signInWithPassword(db, { username: 'tom', password: PASSWORD, code })).toEqual(wrongPassword);
    expect((await reasons('tom')).at(-1)).toBe('sign-in.failed: locked');
  });

  it('accepts each code once, also when the same code is sent twice at once', async () => {
    const now = freezeClock();
    const { id, secret } = await userWithSecondFactor('ted', now);
    const code = await currentTotpCode(secret, now);
    const both = await Promise.all([
      signInWithPassword(db, { username: 'ted', password: PASSWORD, code }),
      signInWithPassword(db, { username: 'ted', password: PASSWORD, code: ` ${code.slice(0, 3)} ${code.slice(3)} ` }),
    ]);
    expect(both.filter((r) => r.ok)).toHaveLength(1);
    expect((await db.user.findUniqueOrThrow({ where: { id } })).totpLastStep).toBe(Math.floor(now.getTime() / STEP_MS));
    expect(await signInWithPassword(db, { username: 'ted', password: PASSWORD, code })).toEqual({ ok: false, reason: 'invalid' });
    // The next step's code is good (once), and resets the failure count.
    vi.setSystemTime(at(now, 1));
    expect((await signInWithPassword(db, { username: 'ted', password: PASSWORD, code: await currentTotpCode(secret, at(now, 1)) })).ok).toBe(true);
    expect((await db.user.findUniqueOrThrow({ where: { id } })).failedSignIns).toBe(0);
    // A code from two steps ago is too old, whatever was used before.
    vi.setSystemTime(at(now, 3));
    expect((await signInWithPassword(db, { username: 'ted', password: PASSWORD, code: await currentTotpCode(secret, at(now, 1)) })).ok).toBe(false);
    const signIns = (await reasons('ted')).filter((r) => r.startsWith('sign-in'));
    // The two sent at once are audited in whichever order they finished.
    expect([...signIns.slice(0, 2)].sort()).toEqual(['sign-in', 'sign-in.failed: code already used']);
    expect(signIns.slice(2)).toEqual(['sign-in.failed: code already used', 'sign-in', 'sign-in.failed: wrong code']);
  });

  it('locks the account when fifty wrong codes come at once with the right password', async () => {
    const now = freezeClock();
    const { id, secret } = await userWithSecondFactor('tia', now);
    const right = await currentTotpCode(secret, now);
    const valid = new Set([right, await currentTotpCode(secret, at(now, 1))]);
    const wrong = Array.from({ length: 60 }, (_, i) => String((Number(right) + 1 + i * 7919) % 1_000_000).padStart(6, '0')).filter((code) => !valid.has(code)).slice(0, 50);
    const results = await Promise.all(wrong.map((code) => signInWithPassword(db, { username: 'tia', password: PASSWORD, code })));
    expect(results.every((r) => !r.ok)).toBe(true);
    expect((await db.user.findUniqueOrThrow({ where: { id } })).lockedUntil!.getTime()).toBeGreaterThan(Date.now());
    expect((await signInWithPassword(db, { username: 'tia', password: PASSWORD, code: right })).ok).toBe(false);
  });

  it('turns the second factor off only with the password and a valid code; an admin’s reset ends the user’s sessions', async () => {
    const now = freezeClock();
    const { id, secret } = await userWithSecondFactor('tara', now);
    const code = await currentTotpCode(secret, now);
    await expect(disableSecondFactor(db, { userId: id, password: 'wrong-password-here', code })).rejects.toThrow(/Wrong password or code/);
    await expect(disableSecondFactor(db, { userId: id, password: PASSWORD, code: code === '000000' ? '999999' : '000000' })).rejects.toThrow(/Wrong password or code/);
    expect((await db.user.findUniqueOrThrow({ where: { id } })).failedSignIns).toBe(2);
    await disableSecondFactor(db, { userId: id, password: PASSWORD, code });
    expect((await loadAccount(db, { userId: id })).secondFactor.state).toBe('off');
    expect((await signInWithPassword(db, { username: 'tara', password: PASSWORD })).ok).toBe(true);

    const again = await userWithSecondFactor('tilda', now);
    const before = (await db.user.findUniqueOrThrow({ where: { id: again.id } })).sessionVersion;
    expect(await resetSecondFactor(db, { actor: 'admin', userId: again.id })).toEqual({ username: 'tilda', hadSecondFactor: true });
    const after = await db.user.findUniqueOrThrow({ where: { id: again.id } });
    expect(after).toMatchObject({ totpSecret: null, totpEnabledAt: null, sessionVersion: before + 1 });
    expect((await signInWithPassword(db, { username: 'tilda', password: PASSWORD })).ok).toBe(true);
    expect((await reasons('tara')).filter((r) => r.startsWith('user.2fa'))).toEqual(['user.2fa-enrol', 'user.2fa-disable-failed: wrong password', 'user.2fa-disable-failed: wrong code', 'user.2fa-disable']);
    const reset = await db.auditEvent.findFirstOrThrow({ where: { action: 'user.2fa-reset', target: 'tilda' } });
    expect(reset).toMatchObject({ actor: 'admin', detail: { hadSecondFactor: true } });
  });

  it('refuses a sealed secret copied from another user, or sealed under another AUTH_SECRET', async () => {
    const now = freezeClock();
    const victim = await userWithSecondFactor('vic', now);
    const attacker = await userWithSecondFactor('mal', now);
    const attackerRow = await db.user.findUniqueOrThrow({ where: { id: attacker.id } });
    // Someone who can write the catalog pastes their own sealed secret (whose codes they know) onto the victim.
    await db.user.update({ where: { id: victim.id }, data: { totpSecret: attackerRow.totpSecret } });
    expect(openTotpSecret(attackerRow.totpSecret!, victim.id)).toBeUndefined();
    expect((await signInWithPassword(db, { username: 'vic', password: PASSWORD, code: await currentTotpCode(attacker.secret, now) })).ok).toBe(false);
    expect((await reasons('vic')).at(-1)).toMatch(/^sign-in.failed: second-factor secret cannot be opened/);

    process.env.AUTH_SECRET = 'another-auth-secret';
    try {
      expect((await signInWithPassword(db, { username: 'mal', password: PASSWORD, code: await currentTotpCode(attacker.secret, now) })).ok).toBe(false);
    } finally {
      process.env.AUTH_SECRET = 'test-auth-secret-for-sealing-totp-secrets';
    }
    expect((await signInWithPassword(db, { username: 'mal', password: PASSWORD, code: await currentTotpCode(attacker.secret, now) })).ok).toBe(true);
  });

  it('slows down failures from one address across names, and a success from it forgets them', async () => {
    const user = ZCreateUser.parse({ username: 'throttled', role: 'viewer', password: PASSWORD });
    await createUser(db, { actor: 'admin', user });
    const from = `192.0.2.${Math.floor(Math.random() * 200) + 1}`;
    const timed = async (username: string, password: string) => {
      const started = performance.now();
      const result = await signInWithPassword(db, { username, password, from });
      return { ok: result.ok, ms: performance.now() - started };
    };
    const first = await timed('nobody-1', 'wrong');
    for (const name of ['nobody-2', 'nobody-3', 'nobody-4']) expect((await timed(name, 'wrong')).ok).toBe(false);
    // Four failures from this address (each for another name): the fifth attempt waits 200 ms x 2^3 first.
    const slowed = await timed('nobody-5', 'wrong');
    expect(slowed.ms - first.ms).toBeGreaterThan(1_400);
    expect((await timed('throttled', PASSWORD)).ok).toBe(true);
    const after = await timed('nobody-6', 'wrong');
    expect(after.ms).toBeLessThan(slowed.ms - 1_000);
  });
});

describe('single sign-on', () => {
  let db: PrismaClient;
  const issuer = 'https://idp.example.test';
  beforeAll(async () => { db = (await createMigratedCatalog()).db; });
  afterAll(async () => { await db?.$disconnect(); });

  const addUser = (username: string, email: string) => createUser(db, { actor: 'admin', user: ZCreateUser.parse({ username, role: 'viewer', email, password: '' }) });
  const lastRefusal = async () => (await db.auditEvent.findFirstOrThrow({ where: { action: 'sign-in.failed' }, orderBy: { id: 'desc' } })).detail as { reason: string };

  it('links by email only on the first sign-in of a subject, and only when the email is verified (strictly true)', async () => {
    await addUser('uma', 'uma@example.test');
    for (const emailVerified of [undefined, 'true', false, 1]) {
      expect(await signInWithOidc(db, { issuer, subject: 'uma-sub', email: 'uma@example.test', emailVerified })).toBeUndefined();
      expect((await lastRefusal()).reason).toMatch(/^email not verified/);
    }
    expect((await signInWithOidc(db, { issuer, subject: 'uma-sub', email: 'UMA@example.test', emailVerified: true }))?.username).toBe('uma');
    expect(await db.user.findUniqueOrThrow({ where: { username: 'uma' } })).toMatchObject({ oidcIssuer: issuer, oidcSubject: 'uma-sub' });
    expect(await db.auditEvent.count({ where: { action: 'user.sso-bound', target: 'uma' } })).toBe(1);
    // Later: the subject alone, whatever the email claim says now (none, unverified, or another user's).
    await addUser('ursula', 'ursula@example.test');
    expect((await signInWithOidc(db, { issuer, subject: 'uma-sub' }))?.username).toBe('uma');
    expect((await signInWithOidc(db, { issuer, subject: 'uma-sub', email: 'ursula@example.test', emailVerified: true }))?.username).toBe('uma');
    // The same subject at another issuer is another identity.
    expect(await signInWithOidc(db, { issuer: 'https://other-idp.example.test', subject: 'uma-sub', email: 'uma@example.test', emailVerified: true })).toBeUndefined();
    expect((await lastRefusal()).reason).toBe('the user with this email is bound to another single sign-on identity');
  });

  it('refuses another subject that shows a bound user’s email, binds one of two first sign-ins at once, and unbinds on an email change', async () => {
    await addUser('ivy', 'ivy@example.test');
    expect((await signInWithOidc(db, { issuer, subject: 'ivy-sub', email: 'ivy@example.test', emailVerified: true }))?.username).toBe('ivy');
    expect(await signInWithOidc(db, { issuer, subject: 'impostor', email: 'ivy@example.test', emailVerified: true })).toBeUndefined();
    expect((await lastRefusal()).reason).toBe('the user with this email is bound to another single sign-on identity');

    await addUser('iris', 'iris@example.test');
    const both = await Promise.all(['iris-a', 'iris-b'].map((subject) => signInWithOidc(db, { issuer, subject, email: 'iris@example.test', emailVerified: true })));
    expect(both.filter(Boolean)).toHaveLength(1);

    // An admin gives ivy a new email: her old identity is unbound, the next sign-in links by the new email.
    const ivy = await db.user.findUniqueOrThrow({ where: { username: 'ivy' } });
    await updateUser(db, { actor: 'admin', change: ZUpdateUser.parse({ userId: ivy.id, email: 'ivy.new@example.test' }) });
    expect(await signInWithOidc(db, { issuer, subject: 'ivy-sub', email: 'ivy@example.test', emailVerified: true })).toBeUndefined();
    expect((await signInWithOidc(db, { issuer, subject: 'ivy-new-sub', email: 'ivy.new@example.test', emailVerified: true }))?.username).toBe('ivy');
    // A disabled user is refused through their bound subject too.
    await updateUser(db, { actor: 'admin', change: ZUpdateUser.parse({ userId: ivy.id, disabled: true }) });
    expect(await signInWithOidc(db, { issuer, subject: 'ivy-new-sub' })).toBeUndefined();
    expect((await lastRefusal()).reason).toBe('disabled');
  });
});

describe('sessions', () => {
  let db: PrismaClient;
  beforeAll(async () => { db = (await createMigratedCatalog()).db; });
  afterAll(async () => { await db?.$disconnect(); });

  it('keeps a revoked session id until the session would have ended, then sweeps it', async () => {
    await revokeSession(db, { sessionId: 'old', expiresAt: new Date(Date.now() - 1000) });
    await revokeSession(db, { sessionId: 's1', expiresAt: new Date(Date.now() + 3_600_000), username: 'ann' });
    await revokeSession(db, { sessionId: 's1', expiresAt: new Date(Date.now() + 3_600_000) });
    expect(await isSessionRevoked(db, 's1')).toBe(true);
    expect(await isSessionRevoked(db, 's2')).toBe(false);
    expect(await isSessionRevoked(db, 'old')).toBe(false);
    expect(await db.auditEvent.count({ where: { action: 'sign-out', actor: 'ann' } })).toBe(1);
  });
});

describe('vmdedup user reset-2fa', () => {
  it('shows who has a second factor and removes one, audited, ending the user’s sessions', async () => {
    process.env.AUTH_SECRET = 'cli-test-auth-secret';
    const env = { VMDEDUP_HOME: await tempDir(), DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'user', 'add', 'rita', '--role', 'admin')).code).toBe(0);
    const db = new PrismaClient({ adapter: new PrismaPg({ connectionString: env.DATABASE_URL }) });
    try {
      const rita = await db.user.findUniqueOrThrow({ where: { username: 'rita' } });
      await beginSecondFactorEnrolment(db, { userId: rita.id });
      const account = await loadAccount(db, { userId: rita.id });
      if (account.secondFactor.state !== 'enrolling') throw new Error('not enrolling');
      await confirmSecondFactor(db, { userId: rita.id, code: await currentTotpCode(account.secondFactor.secret) });

      const listed = await cli(env, 'user', 'list');
      expect(listed.stdout).toMatch(/USER\s+ROLE\s+EMAIL\s+STATUS\s+2FA\s+SSO/);
      expect(listed.stdout).toMatch(/rita\s+admin\s+active\s+on\s+-/);
      expect(JSON.parse((await cli(env, 'user', 'list', '--json')).stdout).users[0]).toMatchObject({ username: 'rita', secondFactor: true, singleSignOnBound: false });

      const reset = await cli(env, 'user', 'reset-2fa', 'Rita');
      expect(reset).toMatchObject({ code: 0, stderr: '' });
      expect(reset.stdout).toMatch(/^two-step sign-in of rita removed; their sessions have ended/);
      expect(await db.user.findUniqueOrThrow({ where: { id: rita.id } })).toMatchObject({ totpSecret: null, totpEnabledAt: null, sessionVersion: rita.sessionVersion + 1 });
      expect(await db.auditEvent.findFirstOrThrow({ where: { action: 'user.2fa-reset' } })).toMatchObject({ actor: 'cli', target: 'rita' });
      expect((await cli(env, 'user', 'reset-2fa', 'rita')).stdout).toMatch(/had no two-step sign-in/);
      expect(await cli(env, 'user', 'reset-2fa', 'nobody')).toMatchObject({ code: 2, stderr: "vmdedup: no user named 'nobody' (see 'vmdedup user list')\n" });
      expect((await cli(env, 'user', 'reset-2fa')).code).toBe(2);
    } finally {
      await db.$disconnect();
    }
  });
});

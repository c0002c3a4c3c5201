/**
 * next-auth: username + password (+ a TOTP code for users who set one up) against the catalog's users, plus an
 * OIDC provider when VMDEDUP_OIDC_ISSUER, VMDEDUP_OIDC_CLIENT_ID and VMDEDUP_OIDC_CLIENT_SECRET are set (state,
 * nonce and PKCE checked; the user is found by the ID token's issuer and subject, see signInWithOidc).
 *
 * Sessions are JWTs with an id of their own (`sid`) and a start time: a session ends VMDEDUP_SESSION_HOURS
 * (default 8) after sign-in however active it was (next-auth alone would roll its expiry forever), and signing out
 * revokes its id in the catalog, so a copy of the cookie is refused from then on. Every request re-reads the user
 * (lib/auth/current-user.ts), so a role change, a disabled account or a password reset takes effect at once.
 */
import { randomUUID } from 'node:crypto';
import NextAuth, { CredentialsSignin, type NextAuthConfig } from 'next-auth';
import Credentials from 'next-auth/providers/credentials';
import { isSessionRevoked, revokeSession } from '../catalog/sessions';
import { signInWithOidc } from '../services/users/sign-in-with-oidc';
import { signInWithPassword } from '../services/users/sign-in-with-password';
import { getCatalog } from '../catalog/db';
import { clientAddress, peerAddress } from './forwarded';
import { ZSignIn } from '../validation/users';

/** How the session was signed in: a second factor is asked of password sign-ins only (the IdP has its own). */
export type SignInMethod = 'password' | 'oidc';

declare module 'next-auth' {
  interface User { sessionVersion?: number }
  interface Session { user: { id: string; name?: string | null; email?: string | null; sessionVersion: number; via: SignInMethod } }
}

const oidc = process.env.VMDEDUP_OIDC_ISSUER && process.env.VMDEDUP_OIDC_CLIENT_ID && process.env.VMDEDUP_OIDC_CLIENT_SECRET
  ? {
    id: 'oidc', name: process.env.VMDEDUP_OIDC_NAME ?? 'single sign-on', type: 'oidc' as const,
    issuer: process.env.VMDEDUP_OIDC_ISSUER, clientId: process.env.VMDEDUP_OIDC_CLIENT_ID, clientSecret: process.env.VMDEDUP_OIDC_CLIENT_SECRET,
    // next-auth checks only PKCE and state unless told: the nonce binds the ID token to this browser's sign-in.
    checks: ['pkce', 'state', 'nonce'] as ('pkce' | 'state' | 'nonce')[],
  }
  : undefined;

export const oidcProviderName = oidc?.name;

const sessionHours = Number(process.env.VMDEDUP_SESSION_HOURS) > 0 ? Number(process.env.VMDEDUP_SESSION_HOURS) : 8;
const SESSION_SECONDS = Math.round(sessionHours * 3600);

/** The claims vmdedup keeps in its session JWT (beside next-auth's own). */
type SessionClaims = { uid?: string; name?: string | null; sv?: number; sid?: string; started?: number; via?: SignInMethod };

function newSession(user: { id: string; name?: string | null; sessionVersion?: number }, via: SignInMethod): SessionClaims {
  return { uid: user.id, name: user.name, sv: user.sessionVersion ?? 0, sid: randomUUID(), started: Math.floor(Date.now() / 1000), via };
}

const config: NextAuthConfig = {
  // The server listens where the administrator put it (127.0.0.1 by default, or behind their proxy).
  trustHost: true,
  session: { strategy: 'jwt', maxAge: SESSION_SECONDS },
  pages: { signIn: '/sign-in', error: '/sign-in' },
  // A wrong password is not a server error: it is answered on the form and written to the audit log.
  logger: {
    error(error) {
      if (error instanceof CredentialsSignin || (error as { type?: string }).type === 'CredentialsSignin') return;
      // next-auth wraps what went wrong (an identity provider's answer, a refused token) in `cause.err`.
      const cause = (error.cause as { err?: unknown } | undefined)?.err ?? error.cause;
      console.error(`[auth] ${error.name}: ${error.message}${cause instanceof Error ? ` (${cause.message})` : ''}`);
    },
  },
  providers: [
    Credentials({
      credentials: { username: { label: 'Username' }, password: { label: 'Password', type: 'password' }, code: { label: 'Code' } },
      async authorize(credentials, request) {
        const parsed = ZSignIn.safeParse(credentials);
        if (!parsed.success) return null;
        // The browser's address: as a trusted proxy saw it, else the connection's own (bin/web-server.mjs).
        const from = clientAddress(request.headers) ?? peerAddress(request.headers);
        const result = await signInWithPassword(await getCatalog(), { ...parsed.data, from });
        if (!result.ok) return null;
        return { id: result.user.id, name: result.user.username, sessionVersion: result.user.sessionVersion };
      },
    }),
    ...(oidc ? [oidc] : []),
  ],
  callbacks: {
    async signIn({ account, profile }) {
      if (account?.provider !== 'oidc') return true;
      // The ID token's claims, validated by next-auth (signature, issuer, audience, expiry, nonce).
      return Boolean(await signInWithOidc(await getCatalog(), {
        issuer: typeof profile?.iss === 'string' ? profile.iss : '', subject: typeof profile?.sub === 'string' ? profile.sub : '',
        email: profile?.email, emailVerified: profile?.email_verified,
      }));
    },
    async jwt({ token, user, account, profile }) {
      const claims = token as typeof token & SessionClaims;
      if (account?.provider === 'oidc') {
        // signIn above bound this (issuer, subject) to a user, or refused: find that user by them, never by email.
        const db = await getCatalog();
        const known = typeof profile?.iss === 'string' && typeof profile.sub === 'string'
          ? await db.user.findUnique({ where: { oidcIssuer_oidcSubject: { oidcIssuer: profile.iss, oidcSubject: profile.sub } } })
          : null;
        if (!known) return null;
        return Object.assign(token, newSession({ id: known.id, name: known.username, sessionVersion: known.sessionVersion }, 'oidc'));
      }
      if (user) return Object.assign(token, newSession({ id: user.id!, name: user.name, sessionVersion: user.sessionVersion }, 'password'));
      // An existing session, on every request: refused past its absolute end, or once signed out.
      const now = Math.floor(Date.now() / 1000);
      if (typeof claims.sid !== 'string' || typeof claims.started !== 'number' || claims.started + SESSION_SECONDS <= now) return null;
      if (await isSessionRevoked(await getCatalog(), claims.sid)) return null;
      return token;
    },
    session({ session, token }) {
      const claims = token as typeof token & SessionClaims;
      session.user = { ...session.user, id: String(claims.uid ?? ''), name: claims.name, sessionVersion: Number(claims.sv ?? -1), via: claims.via === 'oidc' ? 'oidc' : 'password' };
      return session;
    },
  },
  events: {
    // Both ways out (the Sign out button and next-auth's own /api/auth/signout) come here with the token.
    async signOut(message) {
      const claims = ('token' in message ? message.token : null) as SessionClaims | null;
      if (!claims?.sid || typeof claims.started !== 'number') return;
      await revokeSession(await getCatalog(), {
        sessionId: claims.sid, expiresAt: new Date((claims.started + SESSION_SECONDS) * 1000), username: claims.name ?? undefined,
      });
    },
  },
};

export const { handlers, auth, signIn, signOut } = NextAuth(config);

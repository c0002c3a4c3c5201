/**
 * next-auth: username + password against the catalog's users, plus an OIDC provider when VMDEDUP_OIDC_ISSUER,
 * VMDEDUP_OIDC_CLIENT_ID and VMDEDUP_OIDC_CLIENT_SECRET are set (it signs in the catalog user with the same
 * email). Sessions are JWTs that expire after VMDEDUP_SESSION_HOURS (default 8); every request re-reads the
 * user, so a role change, a disabled account or a password reset takes effect at once.
 */
import NextAuth, { CredentialsSignin, type NextAuthConfig } from 'next-auth';
import Credentials from 'next-auth/providers/credentials';
import { signInWithOidc, signInWithPassword } from '../catalog/sign-in';
import { getCatalog } from '../db';
import { clientAddress } from './forwarded';
import { ZSignIn } from '../validation/users';

declare module 'next-auth' {
  interface User { sessionVersion?: number }
  interface Session { user: { id: string; name?: string | null; email?: string | null; sessionVersion: number } }
}

const oidc = process.env.VMDEDUP_OIDC_ISSUER && process.env.VMDEDUP_OIDC_CLIENT_ID && process.env.VMDEDUP_OIDC_CLIENT_SECRET
  ? {
    id: 'oidc', name: process.env.VMDEDUP_OIDC_NAME ?? 'single sign-on', type: 'oidc' as const,
    issuer: process.env.VMDEDUP_OIDC_ISSUER, clientId: process.env.VMDEDUP_OIDC_CLIENT_ID, clientSecret: process.env.VMDEDUP_OIDC_CLIENT_SECRET,
  }
  : undefined;

export const oidcProviderName = oidc?.name;

const sessionHours = Number(process.env.VMDEDUP_SESSION_HOURS) > 0 ? Number(process.env.VMDEDUP_SESSION_HOURS) : 8;

const config: NextAuthConfig = {
  // The server listens where the administrator put it (127.0.0.1 by default, or behind their proxy).
  trustHost: true,
  session: { strategy: 'jwt', maxAge: sessionHours * 3600 },
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
      credentials: { username: { label: 'Username' }, password: { label: 'Password', type: 'password' } },
      async authorize(credentials, request) {
        const parsed = ZSignIn.safeParse(credentials);
        if (!parsed.success) return null;
        const from = clientAddress(request.headers);
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
      if (!profile?.email || profile.email_verified === false) return false;
      return Boolean(await signInWithOidc(await getCatalog(), { email: profile.email, issuer: oidc!.issuer }));
    },
    async jwt({ token, user, account, profile }) {
      if (account?.provider === 'oidc' && profile?.email) {
        const db = await getCatalog();
        const known = await db.user.findUnique({ where: { email: profile.email.toLowerCase() } });
        if (known) Object.assign(token, { uid: known.id, name: known.username, sv: known.sessionVersion });
      } else if (user) {
        Object.assign(token, { uid: user.id, name: user.name, sv: user.sessionVersion ?? 0 });
      }
      return token;
    },
    session({ session, token }) {
      session.user = { ...session.user, id: String(token.uid ?? ''), name: token.name, sessionVersion: Number(token.sv ?? -1) };
      return session;
    },
  },
};

export const { handlers, auth, signIn, signOut } = NextAuth(config);

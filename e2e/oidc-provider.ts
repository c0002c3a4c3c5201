/**
 * A minimal OpenID Connect identity provider for the e2e tests: discovery, the authorization code flow with
 * PKCE (S256), RS256-signed ID tokens, userinfo. Its sign-in page asks for an email address, which it vouches
 * for as verified: a test stand-in for an organisation's IdP, never for real use. The same page lets a test make
 * it misbehave the ways a hostile or broken IdP (or a man in the middle) would: another subject than the email's
 * own, `email_verified` false, missing or the string "true", a wrong or missing nonce, a wrong state.
 *
 *   node --import tsx e2e/oidc-provider.ts <port>
 */
import crypto from 'node:crypto';
import http from 'node:http';
import { OIDC_CLIENT } from './oidc-client';

const port = Number(process.argv[2] ?? 3211);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const KEY_ID = 'e2e-signing-key';

type EmailVerified = 'true' | 'false' | 'missing' | 'string';
type NonceAnswer = 'as-asked' | 'wrong' | 'missing';
type Grant = {
  redirectUri: string; nonce?: string; challenge: string; email: string; expiresAt: number;
  subject: string; emailVerified: EmailVerified; nonceAnswer: NonceAnswer;
};
const grants = new Map<string, Grant>(); // authorization code → what it was issued for (used once)
const accessTokens = new Map<string, Grant>(); // access token → the grant it was issued for

const base64url = (data: string | Buffer) => Buffer.from(data).toString('base64url');
const subjectOf = (email: string) => crypto.createHash('sha256').update(email).digest('hex').slice(0, 24);
const emailVerifiedClaim = (answer: EmailVerified) => ({ true: { email_verified: true }, false: { email_verified: false }, missing: {}, string: { email_verified: 'true' } })[answer];

function signedJwt(claims: Record<string, unknown>): string {
  const signingInput = `${base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: KEY_ID }))}.${base64url(JSON.stringify(claims))}`;
  return `${signingInput}.${crypto.sign('sha256', Buffer.from(signingInput), privateKey).toString('base64url')}`;
}

function json(response: http.ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  response.end(JSON.stringify(body));
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function formBody(request: http.IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of request) body += chunk;
  return new URLSearchParams(body);
}

/** client_secret_basic (next-auth's default) or client_secret_post. */
function clientAuthenticated(request: http.IncomingMessage, body: URLSearchParams): boolean {
  const basic = /^Basic (.+)$/.exec(request.headers.authorization ?? '');
  const [id, secret] = basic
    ? Buffer.from(basic[1], 'base64').toString().split(':').map((part) => decodeURIComponent(part.replace(/\+/g, ' ')))
    : [body.get('client_id'), body.get('client_secret')];
  return id === OIDC_CLIENT.id && secret === OIDC_CLIENT.secret;
}

async function handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
  const url = new URL(request.url ?? '/', issuer);
  const route = `${request.method} ${url.pathname}`;
  switch (route) {
    case 'GET /.well-known/openid-configuration':
      return json(response, 200, {
        issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`,
        userinfo_endpoint: `${issuer}/userinfo`, jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'],
        scopes_supported: ['openid', 'email', 'profile'], token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        code_challenge_methods_supported: ['S256'], grant_types_supported: ['authorization_code'],
      });
    case 'GET /jwks':
      return json(response, 200, { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: KEY_ID, alg: 'RS256', use: 'sig' }] });
    case 'GET /authorize': {
      const params = url.searchParams;
      if (params.get('client_id') !== OIDC_CLIENT.id || params.get('response_type') !== 'code' || params.get('code_challenge_method') !== 'S256') {
        return json(response, 400, { error: 'invalid_request', error_description: 'unknown client, or not a code flow with S256 PKCE' });
      }
      const hidden = [...params].map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`).join('');
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return void response.end(`<!doctype html><html lang="en"><head><title>Test identity provider</title></head><body>
<h1>Test identity provider</h1><form method="post" action="/authorize">${hidden}
<label>Email <input name="email" type="email" required></label>
<details><summary>Misbehave (tests)</summary>
<label>Subject <input name="subject" placeholder="derived from the email"></label>
<label>Email verified <select name="email_verified"><option value="true">true</option><option value="false">false</option><option value="missing">missing</option><option value="string">the string "true"</option></select></label>
<label>Nonce <select name="nonce_answer"><option value="as-asked">as asked</option><option value="wrong">wrong</option><option value="missing">missing</option></select></label>
<label>State <select name="state_answer"><option value="as-asked">as asked</option><option value="wrong">wrong</option></select></label>
</details>
<button type="submit">Continue</button></form></body></html>`);
    }
    case 'POST /authorize': {
      const form = await formBody(request);
      const code = crypto.randomBytes(24).toString('base64url');
      const email = (form.get('email') ?? '').trim();
      grants.set(code, {
        redirectUri: form.get('redirect_uri') ?? '', nonce: form.get('nonce') ?? undefined, challenge: form.get('code_challenge') ?? '',
        email, expiresAt: Date.now() + 60_000, subject: form.get('subject')?.trim() || subjectOf(email),
        emailVerified: (form.get('email_verified') as EmailVerified | null) ?? 'true', nonceAnswer: (form.get('nonce_answer') as NonceAnswer | null) ?? 'as-asked',
      });
      const back = new URL(form.get('redirect_uri') ?? '');
      back.searchParams.set('code', code);
      if (form.get('state')) back.searchParams.set('state', form.get('state_answer') === 'wrong' ? `${form.get('state')}x` : form.get('state')!);
      back.searchParams.set('iss', issuer);
      response.writeHead(302, { location: back.href });
      return void response.end();
    }
    case 'POST /token': {
      const form = await formBody(request);
      if (!clientAuthenticated(request, form)) return json(response, 401, { error: 'invalid_client' });
      const code = form.get('code') ?? '';
      const grant = grants.get(code);
      grants.delete(code);
      const verifier = form.get('code_verifier') ?? '';
      if (form.get('grant_type') !== 'authorization_code' || !grant || grant.expiresAt < Date.now() || grant.redirectUri !== form.get('redirect_uri')
        || base64url(crypto.createHash('sha256').update(verifier).digest()) !== grant.challenge) {
        return json(response, 400, { error: 'invalid_grant' });
      }
      const now = Math.floor(Date.now() / 1000);
      const accessToken = crypto.randomBytes(24).toString('base64url');
      accessTokens.set(accessToken, grant);
      const nonce = grant.nonceAnswer === 'missing' || !grant.nonce ? {} : { nonce: grant.nonceAnswer === 'wrong' ? `${grant.nonce}-not` : grant.nonce };
      return json(response, 200, {
        access_token: accessToken, token_type: 'Bearer', expires_in: 300, scope: 'openid email profile',
        id_token: signedJwt({
          iss: issuer, aud: OIDC_CLIENT.id, sub: grant.subject, iat: now, exp: now + 300,
          ...nonce, email: grant.email, ...emailVerifiedClaim(grant.emailVerified),
        }),
      });
    }
    case 'GET /userinfo': {
      const grant = accessTokens.get(/^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1] ?? '');
      if (!grant) return json(response, 401, { error: 'invalid_token' });
      return json(response, 200, { sub: grant.subject, email: grant.email, ...emailVerifiedClaim(grant.emailVerified) });
    }
    case 'GET /favicon.ico':
      response.writeHead(204);
      return void response.end();
    default:
      return json(response, 404, { error: 'not_found' });
  }
}

http.createServer((request, response) => {
  handle(request, response).catch((err: unknown) => json(response, 500, { error: 'server_error', error_description: String(err) }));
}).listen(port, '127.0.0.1', () => process.stdout.write(`test identity provider on ${issuer}\n`));

import { type NextRequest, NextResponse } from 'next/server';
import { REQUESTED_PATH_HEADER } from '@/lib/auth/callback-path';
import { browserHost, fromTrustedProxy } from '@/lib/auth/forwarded';
import { HSTS, STATIC_SECURITY_HEADERS, contentSecurityPolicy } from '@/lib/auth/security-headers';

const formTargets = process.env.VMDEDUP_OIDC_ISSUER ? [new URL(process.env.VMDEDUP_OIDC_ISSUER).origin] : [];
const FORWARDED = ['x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-for', 'x-forwarded-port', 'forwarded'];
const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Every request: forwarded headers dropped unless a trusted proxy sent them (its address is in
 * VMDEDUP_TRUSTED_PROXIES; Next's own server-action origin check reads X-Forwarded-Host); a state-changing request
 * must come from a page of this site (its Origin names this host; next-auth's own routes keep their CSRF token
 * check); security headers with a per-request CSP nonce for Next's scripts; and the path asked for, so a
 * signed-out visitor comes back to it after signing in.
 */
export function proxy(request: NextRequest) {
  const headers = new Headers(request.headers);
  if (!fromTrustedProxy(request.headers)) for (const name of FORWARDED) headers.delete(name);
  const { host, protocol } = browserHost(headers, request.nextUrl.protocol.replace(/:$/, ''));
  const nonce = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64');
  const csp = contentSecurityPolicy(nonce, { dev: process.env.NODE_ENV !== 'production', formTargets });
  // The refusal below carries them too: every answer of this server has them.
  const secured = (response: NextResponse) => {
    response.headers.set('Content-Security-Policy', csp);
    for (const [name, value] of Object.entries(STATIC_SECURITY_HEADERS)) response.headers.set(name, value);
    if (protocol === 'https') response.headers.set('Strict-Transport-Security', HSTS);
    return response;
  };
  if (UNSAFE_METHODS.has(request.method) && !request.nextUrl.pathname.startsWith('/api/auth/')) {
    const origin = request.headers.get('origin');
    let originHost: string | undefined;
    try {
      originHost = origin ? new URL(origin).host : undefined;
    } catch {
      originHost = undefined;
    }
    if (!originHost || originHost !== host) return secured(new NextResponse('refused: this request does not come from a page of this site', { status: 403 }));
  }
  headers.set(REQUESTED_PATH_HEADER, `${request.nextUrl.pathname}${request.nextUrl.search}`);
  headers.set('x-nonce', nonce);
  headers.set('Content-Security-Policy', csp);
  return secured(NextResponse.next({ request: { headers } }));
}

export const config = { matcher: ['/((?!_next/static|_next/image|icon\\.svg|favicon\\.ico).*)'] };

import type { NextRequest } from 'next/server';
import { browserHost } from './forwarded';

type RouteHandler = (request: NextRequest) => Promise<Response>;

/**
 * next-auth builds an OpenID Connect redirect_uri from the Host header when sign-in starts (a server action) but
 * from the request URL in its callback route, and Next rewrites 127.0.0.1 in request URLs to localhost: the
 * identity provider sees two redirect URIs and refuses the code. The callback route is given the origin the
 * browser used (its Host header, or a trusted proxy's X-Forwarded-Host: see forwarded.ts), unless AUTH_URL fixes the origin for both.
 */
export function withBrowserOrigin(handler: RouteHandler): RouteHandler {
  return (request) => {
    if (process.env.AUTH_URL || process.env.NEXTAUTH_URL) return handler(request);
    const { host, protocol } = browserHost(request.headers, request.nextUrl.protocol.replace(/:$/, ''));
    if (!host) return handler(request);
    const url = new URL(`${request.nextUrl.pathname}${request.nextUrl.search}`, `${protocol}://${host}`);
    const body = request.method === 'GET' || request.method === 'HEAD' ? undefined : request.body;
    // A plain Request: a NextRequest would turn 127.0.0.1 into localhost again. next-auth reads only what
    // Request has (its NextRequest extras are used only when AUTH_URL is set, handled above).
    return handler(new Request(url, { method: request.method, headers: request.headers, body, duplex: 'half' } as RequestInit) as NextRequest);
  };
}

import { type NextRequest, NextResponse } from 'next/server';
import { REQUESTED_PATH_HEADER } from '@/lib/auth/callback-path';

/** Passes the path asked for to the pages, so a signed-out visitor comes back to it after signing in. */
export function proxy(request: NextRequest) {
  const headers = new Headers(request.headers);
  headers.set(REQUESTED_PATH_HEADER, `${request.nextUrl.pathname}${request.nextUrl.search}`);
  return NextResponse.next({ request: { headers } });
}

export const config = { matcher: ['/((?!api/|_next/|sign-in|icon\\.svg|favicon\\.ico).*)'] };

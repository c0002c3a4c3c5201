/**
 * What a reverse proxy says about the browser (X-Forwarded-For/-Host/-Proto) is believed only when it comes from
 * a proxy the administrator names in VMDEDUP_TRUSTED_PROXIES (comma-separated addresses): the request's peer, as
 * the web server (bin/web-server.mjs) stamps it, must be one of them. Otherwise those headers come from the client
 * itself, and anyone could claim any address or host. (proxy.ts drops them from every other request.)
 */
export function trustedProxies(): string[] {
  return (process.env.VMDEDUP_TRUSTED_PROXIES ?? '').split(',').map((entry) => entry.trim()).filter(Boolean);
}

const PEER_HEADER = 'x-vmdedup-peer';

/** The address of the socket's other end, when the request came through bin/web-server.mjs (else unknown:
 *  under `next dev`/`next start` a client could send that header itself). */
export function peerAddress(headers: Headers): string | undefined {
  if (process.env.VMDEDUP_PEER_HEADER !== '1') return undefined;
  return headers.get(PEER_HEADER) || undefined;
}

/** Whether this request's forwarded headers may be believed: its peer is a trusted proxy. */
export function fromTrustedProxy(headers: Headers): boolean {
  const peer = peerAddress(headers);
  return peer !== undefined && trustedProxies().includes(peer);
}

/** The browser's address as a trusted proxy saw it (the right-most X-Forwarded-For entry that is not one of the
 *  proxies), or undefined when the request did not come through one. */
export function clientAddress(headers: Headers): string | undefined {
  if (!fromTrustedProxy(headers)) return undefined;
  const proxies = trustedProxies();
  const hops = (headers.get('x-forwarded-for') ?? '').split(',').map((hop) => hop.trim()).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!proxies.includes(hops[i])) return hops[i];
  return hops[0];
}

/** The host and protocol the browser used: a trusted proxy's X-Forwarded-Host/-Proto, else the request's own Host
 *  header and protocol. (bin/web-server.mjs serves plain HTTP; the protocol Next puts in request URLs follows a
 *  client-sent X-Forwarded-Proto, so it is not believed from a direct client.) */
export function browserHost(headers: Headers, protocol: string): { host?: string; protocol: string } {
  const first = (value: string | null) => value?.split(',')[0].trim() || undefined;
  if (!fromTrustedProxy(headers)) return { host: first(headers.get('host')), protocol: peerAddress(headers) ? 'http' : protocol };
  return { host: first(headers.get('x-forwarded-host')) ?? first(headers.get('host')), protocol: first(headers.get('x-forwarded-proto')) ?? protocol };
}

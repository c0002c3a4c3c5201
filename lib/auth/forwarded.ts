/**
 * What a reverse proxy says about the browser (X-Forwarded-For/-Host/-Proto) is believed only when the
 * administrator names the proxies in VMDEDUP_TRUSTED_PROXIES (comma-separated addresses): without a proxy those
 * headers come from the client itself, and anyone could claim any address or host.
 */
export function trustedProxies(): string[] {
  return (process.env.VMDEDUP_TRUSTED_PROXIES ?? '').split(',').map((entry) => entry.trim()).filter(Boolean);
}

/** The browser's address as the trusted proxies saw it (the right-most X-Forwarded-For entry that is not one of
 *  them), or undefined when no proxy is trusted. */
export function clientAddress(headers: Headers): string | undefined {
  const proxies = trustedProxies();
  if (proxies.length === 0) return undefined;
  const hops = (headers.get('x-forwarded-for') ?? '').split(',').map((hop) => hop.trim()).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!proxies.includes(hops[i])) return hops[i];
  return hops[0];
}

/** The host and protocol the browser used: the proxy's X-Forwarded-Host/-Proto when proxies are trusted, else
 *  the request's own Host header and protocol. */
export function browserHost(headers: Headers, protocol: string): { host?: string; protocol: string } {
  const first = (value: string | null) => value?.split(',')[0].trim() || undefined;
  if (trustedProxies().length === 0) return { host: first(headers.get('host')), protocol };
  return { host: first(headers.get('x-forwarded-host')) ?? first(headers.get('host')), protocol: first(headers.get('x-forwarded-proto')) ?? protocol };
}

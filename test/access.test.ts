/**
 * Source-level half of the access tests (the other half, e2e/access.spec.ts, calls every entry point over HTTP as
 * every role): every server function is a createAction with the permission the table gives it, or one of the
 * public sign-in actions; every page checks the session itself; every route handler checks the table's permission.
 */
import { describe, expect, it } from 'vitest';
import { ACTION_PERMISSIONS, PAGE_ACCESS, PUBLIC_ACTIONS, ROUTE_ACCESS, codeOf as read, findEntryPoints, findServerActions } from './access-inventory';

describe('server actions', () => {
  const { actions, problems } = findServerActions();

  it('are all made with createAction in a "use server" file, except the public sign-in ones', () => {
    expect(problems).toEqual([]);
    const plain = actions.filter((action) => action.kind === 'function').map((action) => `${action.file}#${action.exportName}`);
    expect(plain.sort()).toEqual([...PUBLIC_ACTIONS].sort());
  });

  it('each declare the permission the table gives them, and the table names every one', () => {
    const declared = Object.fromEntries(actions.flatMap((action) => (action.kind === 'createAction' ? [[action.name, action.permission]] : [])));
    expect(declared).toEqual(ACTION_PERMISSIONS);
    const names = actions.flatMap((action) => (action.kind === 'createAction' ? [action.name] : []));
    expect(new Set(names).size, 'action names are unique (refusals are audited by name)').toBe(names.length);
  });
});

describe('pages and route handlers', () => {
  const { pages, routes } = findEntryPoints();

  it('are all in the access table', () => {
    expect([...pages.keys()].sort()).toEqual(Object.keys(PAGE_ACCESS).sort());
    expect([...routes.keys()].sort()).toEqual(Object.keys(ROUTE_ACCESS).sort());
  });

  it('check the session themselves: a page does not rely on its layout (a partial render skips it)', () => {
    const unchecked = [...pages].filter(([pattern, file]) => PAGE_ACCESS[pattern] !== 'public' && !/await requireUser\(\)/.test(read(file)));
    expect(unchecked.map(([, file]) => file)).toEqual([]);
    // A page for some roles only refuses the others with forbidden() (HTTP 403), after the session check.
    const unrefused = [...pages].filter(([pattern, file]) => !['public', 'read'].includes(PAGE_ACCESS[pattern])
      && !new RegExp(`if \\(!can\\(user\\.role, ['"]${PAGE_ACCESS[pattern]}['"]\\)\\)\\s*forbidden\\(\\);`).test(read(file)));
    expect(unrefused.map(([, file]) => file)).toEqual([]);
  });

  it("check the table's permission in every handler", () => {
    const wrong: string[] = [];
    for (const [pattern, file] of routes) {
      if (ROUTE_ACCESS[pattern] === 'public') continue;
      const text = read(file);
      const handlers = [...text.matchAll(/export (?:async function|const) (GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)\b/g)].map((m) => m[1]);
      const checks = [...text.matchAll(/await routeUser\(['"]([a-z-]+)['"]\)/g)].map((m) => m[1]);
      if (handlers.length === 0 || checks.length !== handlers.length || checks.some((permission) => permission !== ROUTE_ACCESS[pattern])) {
        wrong.push(`${file}: handlers ${handlers.join(',') || 'none'}, checks ${checks.join(',') || 'none'}, table says ${ROUTE_ACCESS[pattern]}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});

describe('forwarded headers', () => {
  const withEnv = async (env: Record<string, string | undefined>, check: (forwarded: typeof import('../lib/auth/forwarded')) => void) => {
    const saved = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
    Object.assign(process.env, env);
    for (const [name, value] of Object.entries(env)) if (value === undefined) delete process.env[name];
    try {
      check(await import('../lib/auth/forwarded'));
    } finally {
      for (const [name, value] of Object.entries(saved)) if (value === undefined) delete process.env[name]; else process.env[name] = value;
    }
  };
  const request = (peer: string, extra: Record<string, string> = {}) => new Headers({
    host: '127.0.0.1:3000', 'x-vmdedup-peer': peer, 'x-forwarded-host': 'backup.example', 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.7, 10.0.0.5', ...extra,
  });

  it('are believed only from a trusted proxy, as the web server names the connection', async () => {
    await withEnv({ VMDEDUP_TRUSTED_PROXIES: '10.0.0.5', VMDEDUP_PEER_HEADER: '1' }, ({ browserHost, clientAddress }) => {
      expect(browserHost(request('10.0.0.5'), 'http')).toEqual({ host: 'backup.example', protocol: 'https' });
      expect(clientAddress(request('10.0.0.5'))).toBe('203.0.113.7');
      // The same headers straight from a client: its own Host; plain HTTP even when Next's URL says https.
      expect(browserHost(request('192.0.2.9'), 'https')).toEqual({ host: '127.0.0.1:3000', protocol: 'http' });
      expect(clientAddress(request('192.0.2.9'))).toBeUndefined();
    });
    // Not served by bin/web-server.mjs: the peer header could come from the client, so nothing is believed.
    await withEnv({ VMDEDUP_TRUSTED_PROXIES: '10.0.0.5', VMDEDUP_PEER_HEADER: undefined }, ({ browserHost, clientAddress, fromTrustedProxy }) => {
      expect(fromTrustedProxy(request('10.0.0.5'))).toBe(false);
      expect(browserHost(request('10.0.0.5'), 'http').host).toBe('127.0.0.1:3000');
      expect(clientAddress(request('10.0.0.5'))).toBeUndefined();
    });
    await withEnv({ VMDEDUP_TRUSTED_PROXIES: undefined, VMDEDUP_PEER_HEADER: '1' }, ({ fromTrustedProxy }) => {
      expect(fromTrustedProxy(request('10.0.0.5'))).toBe(false);
    });
  });
});

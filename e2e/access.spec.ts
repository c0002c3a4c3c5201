/**
 * Every entry point an attacker can reach, called over HTTP as each role and signed out, against the table of who
 * may use it (test/access-inventory.ts): server actions by their ids in the build's manifest, every page with and
 * without the headers of Next's partial renders, every route handler; then the security headers and the origin
 * check, also through a trusted proxy (127.0.0.2, named in VMDEDUP_TRUSTED_PROXIES by playwright.config.ts).
 */
import fs from 'node:fs';
import http from 'node:http';
import type { APIRequestContext, APIResponse, BrowserContext } from '@playwright/test';
import { type Role, ROLES, can } from '../lib/auth/roles';
import { type Access, ACTION_PERMISSIONS, PAGE_ACCESS, PUBLIC_ACTIONS, ROUTE_ACCESS, findEntryPoints, findServerActions } from '../test/access-inventory';
import { ADMIN, PASSWORD, e2eHome, ensureUser, expect, test } from './fixtures';

type Caller = Role | 'signed-out';
const CALLERS: Caller[] = ['signed-out', ...ROLES];
/** The admin of serve.sh, and one user of each other role added here. */
const OTHERS = ROLES.filter((role) => role !== 'admin');
const username = (role: Role) => (role === 'admin' ? ADMIN.username : `access-${role}`);

/** Concrete values for the dynamic segments of each pattern (ids that do not exist answer 404 to those allowed). */
const EXAMPLES: Record<string, string> = {
  '/vms/[source]/[name]': '/vms/kvm/vm01',
  '/restores/[id]': '/restores/00000000-0000-4000-8000-000000000000',
  '/api/jobs/[id]': '/api/jobs/00000000-0000-4000-8000-000000000000',
  '/api/auth/[...nextauth]': '/api/auth/session',
};
const MISSING = new Set(['/restores/[id]', '/api/jobs/[id]']);
const url = (pattern: string) => {
  if (pattern.includes('[') && !EXAMPLES[pattern]) throw new Error(`no example URL for ${pattern}: add one to EXAMPLES`);
  return EXAMPLES[pattern] ?? pattern;
};

/** Data that only a permitted caller may see: the fleet's VM names, its folder, the other users' names. Names that
 *  the URL itself carries (a VM page's) are not counted. */
function leaks(body: string, requestUrl: string, caller: Caller): string[] {
  const names = ['vm01', 'vm02', 'vm03', 'app1', 'app2', ...OTHERS.filter((role) => role !== caller).map(username)];
  const found = names.filter((name) => !requestUrl.includes(name) && new RegExp(`(?<![A-Za-z0-9-])${name}(?![A-Za-z0-9-])`).test(body));
  return body.includes(`${e2eHome()}/fleet`) ? [...found, 'the fleet folder'] : found;
}

/** How a response refuses: a redirect to sign-in (as HTTP or inside an RSC stream), 401, 403, or not at all. */
function refusal(response: APIResponse, body: string): 'sign-in' | '401' | '403' | undefined {
  const location = response.headers().location ?? '';
  if (response.status() >= 300 && response.status() < 400 && /^(https?:\/\/[^/]+)?\/sign-in(\?|$)/.test(location)) return 'sign-in';
  if (/NEXT_REDIRECT;(replace|push);\/sign-in[?;]/.test(body)) return 'sign-in';
  if (response.status() === 401) return '401';
  if (response.status() === 403 || body.includes('NEXT_HTTP_ERROR_FALLBACK;403')) return '403';
  return undefined;
}

/** GET without following redirects, except Next's own one that adds the `_rsc` cache-busting hash of RSC requests
 *  (without it a partial-render request never reaches the page). */
async function get(request: APIRequestContext, path: string, headers: Record<string, string> = {}): Promise<{ response: APIResponse; body: string }> {
  let response = await request.get(path, { headers, maxRedirects: 0 });
  const location = response.headers().location;
  if (response.status() === 307 && location) {
    const to = new URL(location, 'http://x');
    if (to.pathname === new URL(path, 'http://x').pathname && to.searchParams.has('_rsc')) response = await request.get(`${to.pathname}${to.search}`, { headers, maxRedirects: 0 });
  }
  return { response, body: await response.text() };
}

/** The router state of the overview page (or of /vms, for the overview itself): sent with a request for another
 *  page, Next renders that page's segments alone, without the (app) layout and its session check. */
function stateTreeBeside(pattern: string): string {
  const page = ['__PAGE__', {}, null, null, 0];
  const tree = pattern === '/' ? ['vms', { children: page }, null, null, 0] : page;
  return encodeURIComponent(JSON.stringify(['', { children: ['(app)', { children: tree }, null, null, 0] }, null, null, 16]));
}

const RSC_VARIANTS: Record<string, (pattern: string) => Record<string, string>> = {
  'plain': () => ({}),
  'RSC: 1': () => ({ RSC: '1' }),
  'RSC page alone (Next-Router-State-Tree)': (pattern) => ({ RSC: '1', 'Next-Router-State-Tree': stateTreeBeside(pattern) }),
  'RSC prefetch': () => ({ RSC: '1', 'Next-Router-Prefetch': '1' }),
  'RSC segment prefetch': () => ({ RSC: '1', 'Next-Router-Prefetch': '1', 'Next-Router-Segment-Prefetch': '/_tree' }),
  'RSC segment prefetch of the page': (pattern) => ({ RSC: '1', 'Next-Router-Prefetch': '1', 'Next-Router-Segment-Prefetch': `/(app)${pattern === '/' ? '' : pattern}/__PAGE__` }),
};

/** The build's manifest: every server action id a client can POST, with the file and export it runs. */
type Manifest = { node: Record<string, { workers: Record<string, unknown>; filename: string; exportedName: string }> };
const manifest = () => JSON.parse(fs.readFileSync('.next/server/server-reference-manifest.json', 'utf8')) as Manifest;

/** Calls a server action by its id, as the browser's client router does. */
async function callAction(request: APIRequestContext, origin: string, page: string, id: string, input: unknown): Promise<APIResponse> {
  return request.post(page, {
    headers: { 'Next-Action': id, 'Content-Type': 'text/plain;charset=UTF-8', Accept: 'text/x-component', Origin: origin },
    data: JSON.stringify([input]), maxRedirects: 0,
  });
}

/** Signs in through the real form (as fixtures.ts does, with time for a loaded machine: hashing is slow on purpose). */
async function signInSlowly(context: BrowserContext, user: { username: string; password: string }): Promise<void> {
  const page = await context.newPage();
  await page.goto('/sign-in');
  await page.getByLabel('Username').fill(user.username);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expect(page.getByTestId('signed-in-as')).toContainText(user.username, { timeout: 30_000 });
  await page.close();
}

/** A request context per role, signed in through the real form, and one signed out: shared by the tests. The
 *  admin adds the other users through the create-user action (the CLI resets them when they exist). */
const contexts = new Map<Caller, APIRequestContext>();
let browserContexts: BrowserContext[] = [];
test.beforeAll(async ({ browser, baseURL }) => {
  browserContexts = await Promise.all(CALLERS.map(() => browser.newContext()));
  CALLERS.forEach((caller, i) => contexts.set(caller, browserContexts[i].request));
  await signInSlowly(browserContexts[CALLERS.indexOf('admin')], ADMIN);
  const [createUser] = Object.entries(manifest().node).filter(([, entry]) => entry.exportedName === 'createUserAction');
  await Promise.all(OTHERS.map(async (role) => {
    const user = { username: username(role), password: PASSWORD };
    const created = await (await callAction(contexts.get('admin')!, baseURL!, '/users', createUser[0], { ...user, role, email: '' })).text();
    if (!created.includes('"ok":true')) ensureUser(user.username, role);
    await signInSlowly(browserContexts[CALLERS.indexOf(role)], user);
  }));
});
test.afterAll(async () => { await Promise.all(browserContexts.map((context) => context.close())); });

/** Runs `jobs` four at a time (the server has two cores; one at a time takes too long). */
async function inBatches<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < jobs.length; i += 4) results.push(...await Promise.all(jobs.slice(i, i + 4).map((job) => job())));
  return results;
}

const allowed = (access: Access, caller: Caller) => access === 'public' || (caller !== 'signed-out' && can(caller, access));

test('every server action refuses exactly the callers its permission refuses, called by its id as each role', async ({ baseURL }) => {
  const { actions } = findServerActions();
  const byExport = new Map(actions.map((action) => [`${action.file}#${action.exportName}`, action]));
  const reachable = Object.entries(manifest().node).map(([id, entry]) => ({ id, key: `${entry.filename}#${entry.exportedName}`, worker: Object.keys(entry.workers)[0] }));
  expect(reachable.filter((entry) => !byExport.has(entry.key)).map((entry) => entry.key), 'ids whose action the source scan does not know').toEqual([]);
  expect(reachable.map((entry) => entry.key).sort(), 'every action has an id, nothing else does').toEqual([...byExport.keys()].sort());
  expect(reachable.filter((entry) => byExport.get(entry.key)!.kind === 'function').map((entry) => entry.key).sort()).toEqual([...PUBLIC_ACTIONS].sort());

  // Input no schema accepts: a permitted caller gets BAD_INPUT (so the role check passed, and nothing ran).
  const calls = reachable.flatMap(({ id, key, worker }) => {
    const action = byExport.get(key)!;
    if (action.kind !== 'createAction') return [];
    const page = url(`/${worker.replace(/^app\//, '').replace(/(^|\/)page$/, '').split('/').filter((s) => !/^\(.*\)$/.test(s)).join('/')}`);
    return CALLERS.map((caller) => async () => {
      const response = await callAction(contexts.get(caller)!, baseURL!, page, id, null);
      const code = /"code":"([A-Z_]+)"/.exec(await response.text())?.[1] ?? `HTTP ${response.status()}`;
      const expected = caller === 'signed-out' ? 'UNAUTHENTICATED' : can(caller, ACTION_PERMISSIONS[action.name]) ? 'BAD_INPUT' : 'FORBIDDEN';
      return code === expected ? undefined : `${action.name} (${ACTION_PERMISSIONS[action.name]}) as ${caller}: ${code}, expected ${expected}`;
    });
  });
  expect(calls.length).toBe(Object.keys(ACTION_PERMISSIONS).length * CALLERS.length);
  expect((await inBatches(calls)).filter(Boolean)).toEqual([]);
});

test('signed out, no page or route handler answers with its data, with or without the headers of partial renders', async () => {
  const { pages, routes } = findEntryPoints();
  const signedOut = contexts.get('signed-out')!;
  const checks = [
    ...[...pages.keys()].filter((pattern) => PAGE_ACCESS[pattern] !== 'public').flatMap((pattern) => Object.entries(RSC_VARIANTS).map(([variant, headers]) => ({ pattern, variant, headers: headers(pattern), path: url(pattern) }))),
    ...[...pages.keys()].filter((pattern) => PAGE_ACCESS[pattern] !== 'public').map((pattern) => ({ pattern, variant: '?_rsc=', headers: {}, path: `${url(pattern)}?_rsc=abcde` })),
    ...[...routes.keys()].filter((pattern) => ROUTE_ACCESS[pattern] !== 'public').flatMap((pattern) => ['plain', 'RSC: 1', 'RSC page alone (Next-Router-State-Tree)'].map((variant) => ({ pattern, variant, headers: RSC_VARIANTS[variant](pattern), path: url(pattern) }))),
  ].map(({ pattern, variant, headers, path }) => async () => {
    const { response, body } = await get(signedOut, path, headers);
    const how = refusal(response, body);
    const leaked = leaks(body, path, 'signed-out');
    const isRoute = pattern.startsWith('/api/');
    // A prefetch of a page that renders per request carries only the route's shape, never its data (not a refusal, no leak).
    const prefetch = response.status() === 200 && /prefetch/.test(variant);
    const ok = leaked.length === 0 && (isRoute ? how === '401' : how === 'sign-in' || prefetch);
    return ok ? undefined : `${path} [${variant}]: HTTP ${response.status()}, refusal ${how ?? 'none'}${leaked.length ? `, shows ${leaked.join(', ')}` : ''}`;
  });
  expect((await inBatches(checks)).filter(Boolean)).toEqual([]);
});

test('each role: pages and routes it may not use answer 403 without their data, the others answer', async () => {
  const { pages, routes } = findEntryPoints();
  const shown = new Set<string>();
  const entries = [...[...pages.keys()].map((pattern) => ({ pattern, access: PAGE_ACCESS[pattern] })), ...[...routes.keys()].map((pattern) => ({ pattern, access: ROUTE_ACCESS[pattern] }))]
    .filter(({ access }) => access !== 'public');
  const checks = ROLES.flatMap((role) => entries.flatMap(({ pattern, access }) => ['plain', ...pattern.startsWith('/api/') ? [] : ['RSC page alone (Next-Router-State-Tree)']].map((variant) => async () => {
    const path = url(pattern);
    const { response, body } = await get(contexts.get(role)!, path, RSC_VARIANTS[variant](pattern));
    const how = refusal(response, body);
    const status = response.status();
    if (allowed(access, role)) {
      if (leaks(body, path, role).length) shown.add(`${path} [${variant}] as ${role}`);
      const ok = how === undefined && (status === 200 || (MISSING.has(pattern) && status === 404));
      return ok ? undefined : `${path} [${variant}] as ${role} (may ${access}): HTTP ${status}, refusal ${how ?? 'none'}`;
    }
    const leaked = leaks(body, path, role);
    // The page itself answers 403 (RSC streams carry Next's 403 marker instead of the status).
    const ok = how === '403' && (variant !== 'plain' || status === 403) && leaked.length === 0;
    return ok ? undefined : `${path} [${variant}] as ${role} (may not ${access}): HTTP ${status}, refusal ${how ?? 'none'}${leaked.length ? `, shows ${leaked.join(', ')}` : ''}`;
  })));
  expect((await inBatches(checks)).filter(Boolean)).toEqual([]);
  // The leak check sees data where there is some: those allowed get the VM names, the user list, the audit trail.
  for (const seen of ['/vms [plain] as viewer', '/vms [RSC page alone (Next-Router-State-Tree)] as viewer', '/restores/new [plain] as operator', '/users [plain] as admin', '/audit [plain] as approver', '/api/audit [plain] as approver']) {
    expect(shown, seen).toContain(seen);
  }
});

/** A raw request to the e2e server from a chosen local address (127.0.0.2 is the trusted proxy). */
function rawRequest(baseURL: string, options: { from: string; method?: string; path: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  const target = new URL(baseURL);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: target.hostname, port: target.port, localAddress: options.from, method: options.method ?? 'GET', path: options.path, headers: options.headers }, (response) => {
      response.resume();
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers }));
    });
    request.on('error', reject);
    request.end(options.body);
  });
}

test('security headers on pages and API routes; HSTS only from a trusted proxy over https; forged origins and hosts refused', async ({ baseURL }) => {
  const here = new URL(baseURL!);
  const direct = '127.0.0.1';
  const proxy = '127.0.0.2';
  // Headers on a page signed out, a page's redirect, an API route's 401 and next-auth's own route.
  for (const path of ['/sign-in', '/vms', '/api/jobs', '/api/auth/session']) {
    const { headers } = await rawRequest(baseURL!, { from: direct, path });
    expect(headers['content-security-policy'], path).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9+/=]{16,}' 'strict-dynamic'/);
    expect(headers['content-security-policy'], path).toContain("frame-ancestors 'none'");
    expect(headers['x-content-type-options'], path).toBe('nosniff');
    expect(headers['referrer-policy'], path).toBe('same-origin');
    expect(headers['strict-transport-security'], `${path} over plain http`).toBeUndefined();
  }
  // Each response has its own nonce.
  const nonces = await Promise.all([1, 2].map(async () => /'nonce-([^']+)'/.exec(String((await rawRequest(baseURL!, { from: direct, path: '/sign-in' })).headers['content-security-policy']))?.[1]));
  expect(nonces[0]).not.toBe(nonces[1]);

  // HSTS: when the trusted proxy says the browser came over https, not when a client says so itself.
  const httpsFromProxy = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'backup.example', 'X-Forwarded-For': '203.0.113.7' };
  expect((await rawRequest(baseURL!, { from: proxy, path: '/sign-in', headers: httpsFromProxy })).headers['strict-transport-security']).toBe('max-age=31536000');
  expect((await rawRequest(baseURL!, { from: proxy, path: '/api/jobs', headers: httpsFromProxy })).headers['strict-transport-security']).toBe('max-age=31536000');
  expect((await rawRequest(baseURL!, { from: direct, path: '/sign-in', headers: httpsFromProxy })).headers['strict-transport-security']).toBeUndefined();
  expect((await rawRequest(baseURL!, { from: direct, path: '/sign-in', headers: { ...httpsFromProxy, 'X-Vmdedup-Peer': proxy } })).headers['strict-transport-security'], 'a client naming itself the proxy').toBeUndefined();

  // Origins of a state-changing request (a server action POST; refused before it reaches one).
  const post = (from: string, headers: Record<string, string>) => rawRequest(baseURL!, { from, method: 'POST', path: '/sources', headers: { 'Content-Type': 'text/plain', ...headers }, body: 'x' });
  const forged = await post(direct, { Origin: 'http://evil.example' });
  expect(forged.status, 'forged Origin').toBe(403);
  expect(forged.headers, 'the refusal has the headers too').toMatchObject({ 'x-content-type-options': 'nosniff', 'referrer-policy': 'same-origin' });
  expect(forged.headers['content-security-policy']).toContain("frame-ancestors 'none'");
  expect((await post(direct, {})).status, 'no Origin').toBe(403);
  expect((await post(direct, { Origin: 'null' })).status, 'opaque Origin').toBe(403);
  expect((await post(direct, { Origin: 'http://evil.example', 'X-Forwarded-Host': 'evil.example' })).status, 'forged X-Forwarded-Host from an untrusted address').toBe(403);
  expect((await post(direct, { Origin: 'http://evil.example', 'X-Forwarded-Host': 'evil.example', 'X-Vmdedup-Peer': proxy })).status, 'a client naming itself the proxy').toBe(403);
  expect((await post(proxy, { Origin: 'http://evil.example', 'X-Forwarded-Host': 'backup.example' })).status, 'forged Origin through the proxy').toBe(403);
  expect((await post(proxy, { Origin: here.origin, 'X-Forwarded-Host': 'backup.example' })).status, 'the direct origin through the proxy').toBe(403);
  expect((await post(direct, { Origin: here.origin })).status, 'same origin, direct').not.toBe(403);
  expect((await post(proxy, { Origin: 'https://backup.example', ...httpsFromProxy })).status, 'the forwarded origin through the proxy').not.toBe(403);
});

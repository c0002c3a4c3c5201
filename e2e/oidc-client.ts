/** How the e2e server is registered with the test identity provider (e2e/oidc-provider.ts); serve.sh passes the same. */
export const OIDC_PORT = Number(process.env.E2E_OIDC_PORT ?? 3211);
export const OIDC_CLIENT = { id: 'vmdedup-e2e', secret: 'e2e-oidc-client-secret', name: 'Test IdP' };

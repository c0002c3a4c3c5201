import { defineConfig } from '@playwright/test';
import { OIDC_CLIENT, OIDC_PORT } from './e2e/oidc-client';

const port = Number(process.env.E2E_PORT ?? 3210);

export default defineConfig({
  testDir: 'e2e',
  outputDir: 'test-results/e2e',
  timeout: 60_000,
  workers: 1,
  reporter: [['list']],
  globalTeardown: './e2e/global-teardown.ts',
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    },
  },
  webServer: [
    {
      // The identity provider that single sign-on is tested against.
      command: `node --import tsx e2e/oidc-provider.ts ${OIDC_PORT}`,
      url: `http://127.0.0.1:${OIDC_PORT}/.well-known/openid-configuration`,
      reuseExistingServer: false,
      stdout: 'pipe',
    },
    {
      // Builds a small fleet with qemu-img, backs it up through the CLI, then runs `npm start` on it.
      command: `bash e2e/serve.sh ${port}`,
      url: `http://127.0.0.1:${port}`,
      timeout: 240_000,
      reuseExistingServer: false,
      stdout: 'pipe',
      env: {
        VMDEDUP_OIDC_ISSUER: `http://127.0.0.1:${OIDC_PORT}`, VMDEDUP_OIDC_CLIENT_ID: OIDC_CLIENT.id,
        VMDEDUP_OIDC_CLIENT_SECRET: OIDC_CLIENT.secret, VMDEDUP_OIDC_NAME: OIDC_CLIENT.name,
        // A reverse proxy at 127.0.0.2 (e2e/access.spec.ts connects from there); the browser's 127.0.0.1 stays untrusted.
        VMDEDUP_TRUSTED_PROXIES: '127.0.0.2',
      },
    },
  ],
});

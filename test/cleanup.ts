/** Run before every test file (vitest setupFiles): what the file made in the temp dir goes when the file ends. */
import { afterAll } from 'vitest';
import { dropTestDatabases, removeTempDirs, unmountTmpfs } from './scratch';

// Registered before the file's own hooks, so it runs after them (vitest runs after-hooks in reverse order).
afterAll(async () => {
  await unmountTmpfs();
  await removeTempDirs();
  await dropTestDatabases();
});

#!/usr/bin/env node
// `npm start`: set up and run vmdedup on its embedded defaults (see lib/cli/start.ts).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

process.env.VMDEDUP_APP_DIR ??= join(dirname(fileURLToPath(import.meta.url)), '..');
register();
const { start } = await import('../lib/cli/start.ts');
try {
  process.exitCode = await start();
} catch (err) {
  process.stderr.write(`vmdedup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}

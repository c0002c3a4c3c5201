#!/usr/bin/env node
// `npm start`: set up and run vmdedup on its embedded defaults (lib/cli/start.ts).
import path from 'node:path';
import { appDir, ensureBuilt } from './build.mjs';

process.env.VMDEDUP_APP_DIR ??= appDir;
try {
  const { start } = await import(path.join(await ensureBuilt(), 'start.js'));
  process.exitCode = await start();
} catch (err) {
  process.stderr.write(`vmdedup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}

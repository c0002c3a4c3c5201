#!/usr/bin/env node
// Entry point of the vmdedup CLI (lib/cli/main.ts, bundled into dist/ on first use or after a change).
import path from 'node:path';
import { appDir, ensureBuilt } from './build.mjs';

process.env.VMDEDUP_APP_DIR ??= appDir;
// `vmdedup backups --json | head`: a reader that stops early is not an error.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(process.exitCode ?? 0);
});
const { main } = await import(path.join(await ensureBuilt(), 'cli.js'));
process.exitCode = await main(process.argv.slice(2));

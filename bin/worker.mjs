#!/usr/bin/env node
// Entry point of the job worker (lib/worker/main.ts, bundled into dist/ like the CLI).
import path from 'node:path';
import { appDir, ensureBuilt } from './build.mjs';

process.env.VMDEDUP_APP_DIR ??= appDir;
const { runWorker } = await import(path.join(await ensureBuilt(), 'worker.js'));
process.exitCode = await runWorker(process.argv.slice(2));

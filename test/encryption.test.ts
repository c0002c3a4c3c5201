/**
 * An encrypted repository (issue 14) through the real CLI: `repository init --encrypt`, backups whose files hold no
 * plain byte of the fleet (a plain repository of the same fleet does, as a control), restores byte for byte, the
 * passphrase and recovery key, key slots added and removed, verify finding an altered sealed chunk, and a catalog
 * rebuilt from the encrypted repository alone.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, buildFleet } from '../lib/demo/fleet';
import { cli, createTestDatabase, qemuImg, sha256File, tempDir } from './helpers';

/** Every file of a repository but its config and key slots (those are in the clear by design). */
async function sealedFiles(repo: string): Promise<string[]> {
  const entries = await fs.readdir(repo, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name))
    .filter((file) => { const rel = path.relative(repo, file); return rel !== 'config.json' && !rel.startsWith('keys/'); });
}

/** The needles of `needles` that some file holds. */
async function foundIn(files: string[], needles: Buffer[]): Promise<Set<number>> {
  const found = new Set<number>();
  for (const file of files) {
    const bytes = await fs.readFile(file);
    needles.forEach((needle, i) => { if (bytes.includes(needle)) found.add(i); });
  }
  return found;
}

describe('an encrypted repository, through the CLI', () => {
  let fleet: Fleet;
  let home: string;
  let env: Record<string, string>;
  let recoveryKey: string;
  const repoDir = () => path.join(env.VMDEDUP_HOME, 'repository');
  const images = () => path.join(fleet.libvirtDir, 'images');

  beforeAll(async () => {
    home = await tempDir();
    fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 2, baseMiB: 4, configDiskMiB: 1, privateDiskMiB: 2, vmwareVms: 0 });
    const passwordFile = path.join(home, 'passphrase');
    await fs.writeFile(passwordFile, 'a long passphrase for the tests\n', { mode: 0o600 });
    env = { VMDEDUP_HOME: path.join(home, 'home'), DATABASE_URL: await createTestDatabase(), VMDEDUP_PASSWORD_FILE: passwordFile };
  });

  it('is created by repository init --encrypt, which prints a recovery key once; without a passphrase it is refused', async () => {
    const refused = await cli({ ...env, VMDEDUP_PASSWORD_FILE: '' }, 'repository', 'init', '--encrypt');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/needs a passphrase.*VMDEDUP_PASSWORD_FILE/);
    const init = await cli(env, 'repository', 'init', '--encrypt');
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toMatch(/created encrypted repository/);
    recoveryKey = /RK1(-[0-9a-f]{8}){8}-[0-9a-f]{4}/.exec(init.stdout)![0];
    const config = JSON.parse(await fs.readFile(path.join(repoDir(), 'config.json'), 'utf8'));
    expect(config).toMatchObject({ formatVersion: 4, hash: 'hmac-sha256', encryption: { cipher: 'aes-256-gcm' } });
    const keys = (await fs.readdir(path.join(repoDir(), 'keys'))).filter((name) => name.endsWith('.json'));
    expect(keys).toHaveLength(2);
    expect(await fs.readFile(path.join(repoDir(), 'keys', keys[0]), 'utf8')).not.toContain('a long passphrase');
  });

  it('backs up the fleet (the common base once) into files that hold none of its names, paths or bytes', async () => {
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    const backup = await cli(env, 'backup', '--json');
    expect(backup.code, backup.stderr).toBe(0);
    const report = JSON.parse(backup.stdout) as { backups: { vm: string; disks: { path: string; action: string }[] }[] };
    expect(report.backups.map((b) => b.vm).sort()).toEqual(['vm01', 'vm02']);
    const baseUses = report.backups.flatMap((b) => b.disks.filter((d) => path.basename(d.path) === 'base-1.qcow2'));
    expect(baseUses.map((d) => d.action).sort()).toEqual(['referenced', 'stored']);

    // Needles: a VM's name and uuid as its config writes them, the fleet's folder, and stretches of each disk's bytes.
    const needles = [Buffer.from('<name>vm01</name>'), Buffer.from(fleet.libvirtDir), Buffer.from('base-1.qcow2')];
    for (const disk of ['vm01-data.raw', 'vm02-data.raw', 'site-config.raw', 'base-1.qcow2']) {
      const bytes = await fs.readFile(path.join(images(), disk));
      for (const at of [4096, Math.floor(bytes.length / 2), bytes.length - 4096]) {
        const piece = bytes.subarray(at, at + 48);
        if (piece.some((byte) => byte !== 0)) needles.push(Buffer.from(piece));
      }
    }
    const files = await sealedFiles(repoDir());
    expect([...(await foundIn(files, needles))]).toEqual([]);
    // Every blob is sealed (manifests too: compressed, their text would not show through a search either).
    for (const file of files) expect((await fs.readFile(file)).subarray(0, 4).toString(), file).toBe('VMDS');

    // The control: the same fleet backed up into a plain repository shows stretches of its disks (those zstd keeps as
    // they are), so the search above can find them.
    const plain = { VMDEDUP_HOME: path.join(home, 'plain-home'), DATABASE_URL: await createTestDatabase() };
    expect((await cli(plain, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    expect((await cli(plain, 'backup')).code).toBe(0);
    const plainFound = await foundIn(await sealedFiles(path.join(plain.VMDEDUP_HOME, 'repository')), needles);
    expect(plainFound.size).toBeGreaterThanOrEqual(2);
  });

  it('restores a VM byte for byte', async () => {
    const target = path.join(home, 'restored');
    const restore = await cli(env, 'restore', 'vm01', '--target', target, '--json');
    expect(restore.code, restore.stderr).toBe(0);
    // The common disks (the base, the config disk) stay as they are; the VM's own come back.
    expect(await sha256File(path.join(target, 'images', 'vm01-data.raw'))).toBe(await sha256File(path.join(images(), 'vm01-data.raw')));
    await qemuImg('compare', path.join(target, 'images', 'vm01.qcow2'), path.join(images(), 'vm01.qcow2'));
  });

  it('opens with the recovery key; a missing or wrong passphrase is one line saying what to set', async () => {
    const locked = await cli({ ...env, VMDEDUP_PASSWORD_FILE: '' }, 'verify');
    expect(locked.code).toBe(1);
    expect(locked.stderr.trim().split('\n')).toHaveLength(1);
    expect(locked.stderr).toMatch(/is encrypted.*VMDEDUP_PASSWORD_FILE/);
    const wrong = await cli({ ...env, VMDEDUP_PASSWORD_FILE: '', VMDEDUP_PASSWORD: 'not it' }, 'verify');
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/opens no key slot/);
    const typo = await cli({ ...env, VMDEDUP_PASSWORD_FILE: '', VMDEDUP_PASSWORD: `${recoveryKey.slice(0, -1)}${recoveryKey.endsWith('0') ? '1' : '0'}` }, 'verify');
    expect(typo.stderr).toMatch(/typo/);
    const rescued = await cli({ ...env, VMDEDUP_PASSWORD_FILE: '', VMDEDUP_PASSWORD: recoveryKey }, 'verify', '--json');
    expect(rescued.code, rescued.stderr).toBe(0);
  });

  it('adds and removes passphrases: a removed one opens it no more, and the last slot stays', async () => {
    const second = path.join(home, 'second-passphrase');
    await fs.writeFile(second, 'the second passphrase');
    const added = await cli(env, 'key', 'add', '--password-file', second, '--label', 'ops team');
    expect(added.code, added.stderr).toBe(0);
    const list = JSON.parse((await cli(env, 'key', 'list', '--json')).stdout) as { slots: { id: string; kind: string; label: string | null; kdf: { algorithm: string; N?: number } }[] };
    expect(list.slots.map((s) => s.kind).sort()).toEqual(['passphrase', 'passphrase', 'recovery']);
    expect(list.slots.find((s) => s.label === 'ops team')!.kdf).toMatchObject({ algorithm: 'scrypt', N: 65536 });
    const first = list.slots.find((s) => s.kind === 'passphrase' && s.label !== 'ops team')!;
    const bySecond = { ...env, VMDEDUP_PASSWORD_FILE: second };
    const removed = await cli(bySecond, 'key', 'remove', first.id);
    expect(removed.code, removed.stderr).toBe(0);
    expect((await cli(env, 'verify')).stderr).toMatch(/opens no key slot/);
    expect((await cli(bySecond, 'verify')).code).toBe(0);
    const recovery = list.slots.find((s) => s.kind === 'recovery')!;
    expect((await cli(bySecond, 'key', 'remove', recovery.id)).code).toBe(0);
    const last = list.slots.find((s) => s.label === 'ops team')!;
    const refused = await cli(bySecond, 'key', 'remove', last.id);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/last/);
    env = bySecond;
  });

  it('verify finds a sealed chunk altered in the repository, and the next backup stores it again', async () => {
    const chunks = (await sealedFiles(repoDir())).filter((file) => file.includes(`${path.sep}chunks${path.sep}`));
    const victim = chunks[0];
    const bytes = await fs.readFile(victim);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    await fs.writeFile(victim, bytes);
    const verify = await cli(env, 'verify', '--json');
    expect(verify.code).toBe(1);
    const report = JSON.parse(verify.stdout) as { damaged: { chunk: string; problem: string }[] };
    expect(report.damaged).toEqual([expect.objectContaining({ chunk: path.basename(victim), problem: 'corrupt' })]);
    expect((await cli(env, 'backup', '--reread-after', '0')).code).toBe(0);
    expect((await cli(env, 'verify')).code).toBe(0);
  });

  it('refuses a config.json altered to say plain (the next backups would be written in the clear)', async () => {
    const file = path.join(repoDir(), 'config.json');
    const original = await fs.readFile(file, 'utf8');
    const { encryption: _, ...plain } = JSON.parse(original);
    await fs.writeFile(file, JSON.stringify({ ...plain, formatVersion: 3, hash: 'sha256' }));
    const chunksBefore = (await sealedFiles(repoDir())).length;
    try {
      const backup = await cli(env, 'backup', '--reread-after', '0');
      expect(backup.code).toBe(1);
      expect(backup.stderr).toMatch(/was encrypted, but its config.json now says it is not/);
      expect((await sealedFiles(repoDir())).length).toBe(chunksBefore);
    } finally {
      await fs.writeFile(file, original);
    }
  });

  it('a catalog rebuilt from the encrypted repository alone lists its backups and restores from it', async () => {
    const fresh = { ...env, DATABASE_URL: await createTestDatabase() };
    const rebuild = await cli(fresh, 'catalog', 'rebuild');
    expect(rebuild.code, rebuild.stderr).toBe(0);
    const { backups } = JSON.parse((await cli(fresh, 'backups', '--json')).stdout) as { backups: { vm: string }[] };
    expect(backups.filter((b) => b.vm === 'vm02').length).toBeGreaterThanOrEqual(2);
    const target = path.join(home, 'restored-after-rebuild');
    expect((await cli(fresh, 'restore', 'vm02', '--target', target)).code).toBe(0);
    expect(await sha256File(path.join(target, 'images', 'vm02-data.raw'))).toBe(await sha256File(path.join(images(), 'vm02-data.raw')));
  });
});

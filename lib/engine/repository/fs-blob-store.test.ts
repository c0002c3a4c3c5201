import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canMountTmpfs, deadPid, mountTmpfs, tempDir, unmountTmpfs } from '../../../test/helpers';
import { blobStoreConformance, blobStoreFaultConformance } from './blob-store.conformance';
import { type Fault, FaultyBlobStore, fsError, type FaultCode } from './faulty-blob-store';
import { FsBlobStore, type FsWriteOps } from './fs-blob-store';

/** Every temp-like file under a store's folder, wherever it lies. */
async function tempFiles(root: string): Promise<string[]> {
  const entries = await fs.readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && e.name.includes('.tmp-')).map((e) => path.relative(root, path.join(e.parentPath, e.name)));
}

/** A FileHandle whose chosen methods are replaced. */
function handleWith(handle: fs.FileHandle, overrides: Partial<Record<'write' | 'datasync' | 'sync' | 'close', (...args: never[]) => Promise<unknown>>>): fs.FileHandle {
  return new Proxy(handle, {
    get(target, prop, receiver) {
      const override = overrides[prop as keyof typeof overrides];
      if (override) return override;
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * An FsBlobStore whose own file operations fail as the faults say: a faulty put writes half its bytes to the
 * temp file for real and then fails (a short write, then the error), so the store itself must clean up.
 * Faults of reads go through FaultyBlobStore (FsBlobStore reads with node:fs directly).
 */
function fsStoreFailingInside(root: string, faults: Fault[]): FsBlobStore | FaultyBlobStore {
  let puts = 0;
  let syncs = 0;
  const due = (op: 'put' | 'flush', count: number) => faults.find((f) => f.op === op && (count === (f.call ?? 1) || (f.persistent && count > (f.call ?? 1))));
  let renameThenFail: FaultCode | undefined;
  const io: Partial<FsWriteOps> = {
    open: async (file, flags) => {
      const handle = await fs.open(file, flags);
      if (flags === 'wx') {
        const fault = due('put', ++puts);
        if (!fault) return handle;
        const code = fault.error as FaultCode;
        if (fault.after) {
          renameThenFail = code;
          return handle;
        }
        return handleWith(handle, {
          write: async (data: Uint8Array, offset: number, length: number, position: number) => {
            await handle.write(data, offset, Math.floor(length / 2), position);
            throw fsError(code, 'write', file);
          },
        });
      }
      const fault = due('flush', ++syncs);
      return fault ? handleWith(handle, { sync: async () => { throw fsError(fault.error as FaultCode, 'fsync', file); } }) : handle;
    },
    rename: async (from, to) => {
      await fs.rename(from, to);
      const code = renameThenFail;
      renameThenFail = undefined;
      if (code) throw fsError(code, 'rename', to);
    },
  };
  const store = new FsBlobStore(root, { io });
  const reads = faults.filter((f) => f.op !== 'put' && f.op !== 'flush');
  return reads.length ? new FaultyBlobStore(store, { faults: reads }) : store;
}

blobStoreConformance('FaultyBlobStore over FsBlobStore, no faults', async () => new FaultyBlobStore(new FsBlobStore(await tempDir('vmdedup-blob-'))));
blobStoreFaultConformance('FaultyBlobStore over FsBlobStore', async (faults) => {
  const root = await tempDir('vmdedup-blob-');
  return { store: new FaultyBlobStore(new FsBlobStore(root), { faults }), leftovers: () => tempFiles(root) };
});
blobStoreFaultConformance('FsBlobStore, its own writes failing', async (faults) => {
  const root = await tempDir('vmdedup-blob-');
  return { store: fsStoreFailingInside(root, faults), leftovers: () => tempFiles(root) };
});

describe('FsBlobStore failure paths', () => {
  const data = Buffer.alloc(100_000, 3);

  for (const step of ['datasync', 'close'] as const) {
    it(`removes its temp file when ${step} fails`, async () => {
      const root = await tempDir();
      const store = new FsBlobStore(root, {
        io: { open: async (file, flags) => {
          const handle = await fs.open(file, flags);
          return flags === 'wx' ? handleWith(handle, { [step]: async () => { if (step === 'close') await handle.close(); throw fsError('EIO', step === 'close' ? 'close' : 'fdatasync', file); } }) : handle;
        } },
      });
      await expect(store.put('chunks/ab/x', data)).rejects.toMatchObject({ code: 'EIO' });
      expect(await store.has('chunks/ab/x')).toBe(false);
      expect(await tempFiles(root)).toEqual([]);
    });
  }

  it('keeps its folders and files for the owner alone, whatever the umask', async () => {
    const previous = process.umask(0o022);
    try {
      const root = path.join(await tempDir(), 'store');
      const store = new FsBlobStore(root);
      await store.put('chunks/ab/abcdef', new Uint8Array([1, 2, 3]));
      await store.put('config.json', new Uint8Array([4]));
      await store.flush();
      for (const dir of [root, path.join(root, 'chunks'), path.join(root, 'chunks', 'ab'), path.join(root, 'chunks', '.tmp')]) expect((await fs.stat(dir)).mode & 0o777, dir).toBe(0o700);
      for (const file of [path.join(root, 'chunks', 'ab', 'abcdef'), path.join(root, 'config.json')]) expect((await fs.stat(file)).mode & 0o777, file).toBe(0o600);
    } finally {
      process.umask(previous);
    }
  });

  it('removes its temp file when the rename fails (a folder stands where the blob goes)', async () => {
    const root = await tempDir();
    const store = new FsBlobStore(root);
    await fs.mkdir(path.join(root, 'images', 'x.json', 'in-the-way'), { recursive: true });
    await expect(store.put('images/x.json', data)).rejects.toMatchObject({ code: expect.stringMatching(/EISDIR|ENOTEMPTY|EEXIST/) });
    expect(await tempFiles(root)).toEqual([]);
  });

  it('keeps writing after a short write (the kernel took part of the buffer)', async () => {
    const root = await tempDir();
    let writes = 0;
    const store = new FsBlobStore(root, {
      io: { open: async (file, flags) => {
        const handle = await fs.open(file, flags);
        return flags === 'wx' ? handleWith(handle, {
          write: (async (buffer: Uint8Array, offset: number, length: number, position: number) => { writes++; return handle.write(buffer, offset, Math.min(length, 7_000), position); }) as never,
        }) : handle;
      } },
    });
    await store.put('k', data);
    expect((await store.get('k')).equals(data)).toBe(true);
    expect(writes).toBe(Math.ceil(data.length / 7_000));
  });

  it('makes a folder removed behind its back again', async () => {
    const root = await tempDir();
    const store = new FsBlobStore(root);
    await store.put('chunks/ab/1', data);
    await fs.rm(path.join(root, 'chunks'), { recursive: true });
    await store.put('chunks/ab/2', data);
    expect(await store.has('chunks/ab/2')).toBe(true);
  });

  it('refuses keys that name its temp files', async () => {
    const store = new FsBlobStore(await tempDir());
    await expect(store.put('chunks/.tmp/x', data)).rejects.toThrow(/reserved/);
    await expect(store.put('.tmp', data)).rejects.toThrow(/reserved/);
    await expect(store.put('chunks/x.tmp-host-12-0123abcd', data)).rejects.toThrow(/reserved/);
  });
});

describe('FsBlobStore durability barrier', () => {
  /** A store that records which folders it fsyncs. */
  async function recording() {
    const root = await tempDir();
    const synced: string[] = [];
    const store = new FsBlobStore(root, {
      io: { open: async (file, flags) => {
        const handle = await fs.open(file, flags);
        if (flags !== 'r') return handle;
        return handleWith(handle, { sync: async () => { synced.push(path.relative(root, file) || '.'); return handle.sync(); } });
      } },
    });
    return { root, store, synced };
  }

  it('fsyncs each folder that gained an entry, and the parent of each new folder, once per flush', async () => {
    const { store, synced } = await recording();
    await store.put('chunks/ab/1', Buffer.of(1));
    await store.put('chunks/ab/2', Buffer.of(2));
    await store.put('chunks/cd/3', Buffer.of(3));
    expect(synced).toEqual([]); // no fsync per blob
    await store.flush();
    // chunks/ab and chunks/cd got files; chunks/ got three folders (ab, cd, .tmp); the root got chunks/.
    expect(synced.sort()).toEqual(['.', 'chunks', 'chunks/ab', 'chunks/cd'].sort());
    synced.length = 0;
    await store.flush();
    expect(synced).toEqual([]);
    await store.put('chunks/ab/4', Buffer.of(4));
    await store.flush();
    expect(synced).toEqual(['chunks/ab']);
  });

  it('a flush called while another runs resolves only after that one: it may hold the folders of puts made before it', async () => {
    const root = await tempDir();
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    let holding = true;
    const store = new FsBlobStore(root, {
      io: { open: async (file, flags) => {
        const handle = await fs.open(file, flags);
        if (flags !== 'r') return handle;
        return handleWith(handle, { sync: async () => { if (holding) await held; return handle.sync(); } });
      } },
    });
    await store.put('chunks/ab/1', Buffer.of(1));
    const first = store.flush(); // takes chunks/ab (and the folders made), and waits in its fsync
    let secondDone = false;
    const second = store.flush().then(() => { secondDone = true; }); // nothing new to sync of its own
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(secondDone).toBe(false);
    holding = false;
    release();
    await Promise.all([first, second]);
    expect(secondDone).toBe(true);
  });

  it('a flush fails when a flush it waited for failed (what that one held is not known durable)', async () => {
    const root = await tempDir();
    let fail = true;
    const store = new FsBlobStore(root, {
      io: { open: async (file, flags) => {
        const handle = await fs.open(file, flags);
        if (flags !== 'r') return handle;
        return handleWith(handle, { sync: async () => {
          await new Promise((resolve) => setTimeout(resolve, 20));
          if (fail) throw fsError('EIO', 'fsync', file);
          return handle.sync();
        } });
      } },
    });
    await store.put('chunks/ab/1', Buffer.of(1));
    const first = store.flush();
    const second = store.flush();
    await expect(first).rejects.toMatchObject({ code: 'EIO' });
    await expect(second).rejects.toMatchObject({ code: 'EIO' });
    fail = false;
    await store.flush(); // the folders are pending again, and now durable
  });

  it('keeps folders pending when an fsync fails, so the next flush syncs them', async () => {
    const root = await tempDir();
    let fail = true;
    const synced: string[] = [];
    const store = new FsBlobStore(root, {
      io: { open: async (file, flags) => {
        const handle = await fs.open(file, flags);
        if (flags !== 'r') return handle;
        return handleWith(handle, { sync: async () => {
          if (fail) throw fsError('EIO', 'fsync', file);
          synced.push(path.relative(root, file) || '.');
        } });
      } },
    });
    await store.put('images/a.json', Buffer.of(1));
    await expect(store.flush()).rejects.toMatchObject({ code: 'EIO' });
    fail = false;
    await store.flush();
    expect(synced.sort()).toEqual(['.', 'images']);
  });
});

describe('FsBlobStore temp file sweep', () => {
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'host';
  const hoursAgo = (hours: number) => new Date(Date.now() - hours * 3600 * 1000);

  it('removes temp files of dead processes of this host and old ones of other hosts, keeps the rest', async () => {
    const root = await tempDir();
    const store = new FsBlobStore(root);
    await store.put('config', Buffer.of(1)); // makes .tmp/
    await store.put('chunks/ab/kept', Buffer.of(1)); // makes chunks/.tmp/
    const dead = await deadPid();
    const tmp = path.join(root, 'chunks', '.tmp');
    const files = {
      deadHere: `ab01.tmp-${host}-${dead}-0123abcd`,
      liveHere: `ab02.tmp-${host}-${process.pid}-0123abcd`,
      otherHostYoung: `ab03.tmp-other-host-${dead}-0123abcd`,
      otherHostOld: `ab04.tmp-other-host-${dead}-0123abcd`,
      notATemp: 'README',
    };
    for (const name of Object.values(files)) await fs.writeFile(path.join(tmp, name), 'partial');
    await fs.utimes(path.join(tmp, files.otherHostOld), hoursAgo(25), hoursAgo(25));
    expect(await store.sweepTemporaryFiles()).toEqual({ removed: 2, kept: 2 });
    expect((await fs.readdir(tmp)).sort()).toEqual([files.liveHere, files.otherHostYoung, files.notATemp].sort());
    expect((await store.get('chunks/ab/kept'))[0]).toBe(1);
  });

  it('sweeps, once, the temp files older vmdedup left beside their targets (a kill -9 mid-put)', async () => {
    const root = await tempDir();
    // A repository as older vmdedup wrote it: no .tmp/ folder, temps named <file>.tmp-<pid>-<random>.
    await fs.mkdir(path.join(root, 'chunks', 'ab'), { recursive: true });
    await fs.writeFile(path.join(root, 'chunks', 'ab', 'abcd'), 'whole');
    const dead = await deadPid();
    const stale = path.join(root, 'chunks', 'ab', `abce.tmp-${dead}-0123abcd`);
    const young = path.join(root, 'chunks', 'ab', `abcf.tmp-${dead}-0123abce`);
    const ours = path.join(root, 'chunks', 'ab', `abd0.tmp-${process.pid}-0123abcf`);
    for (const file of [stale, young, ours]) await fs.writeFile(file, 'partial');
    await fs.utimes(stale, hoursAgo(1), hoursAgo(1));
    await fs.utimes(ours, hoursAgo(1), hoursAgo(1));
    const store = new FsBlobStore(root);
    const listed: string[] = [];
    for await (const page of store.list('chunks/')) listed.push(...page);
    expect(listed).toEqual(['chunks/ab/abcd']);
    expect(await store.sweepTemporaryFiles()).toEqual({ removed: 1, kept: 2 });
    expect((await fs.readdir(path.join(root, 'chunks', 'ab'))).sort()).toEqual(['abcd', path.basename(young), path.basename(ours)].sort());
    // .tmp/ now exists: later sweeps read only the .tmp folders.
    expect(await store.sweepTemporaryFiles()).toEqual({ removed: 0, kept: 0 });
  });

  it('lists a folder of thousands of keys in pages of at most 1000, every key once, nested folders included', async () => {
    const root = await tempDir();
    const store = new FsBlobStore(root);
    await store.put('images/first.json', Buffer.of(1)); // makes the folder as a put does
    const names = Array.from({ length: 2500 }, (_, i) => `img-${String(i).padStart(4, '0')}.json`);
    for (const name of names) await fs.writeFile(path.join(root, 'images', name), '{}');
    await store.put('images/nested/deep.json', Buffer.of(2));
    const pages: string[][] = [];
    for await (const page of store.list('images/')) pages.push(page);
    expect(pages.every((page) => page.length > 0 && page.length <= 1000)).toBe(true);
    expect(pages.length).toBeGreaterThanOrEqual(3);
    expect(pages.flat().sort()).toEqual(['images/first.json', ...names.map((name) => `images/${name}`), 'images/nested/deep.json'].sort());
  });

  it('sweeps what a kill -9 in the middle of puts left, and never a running writer\'s temp files', async () => {
    const root = await tempDir();
    // A writer that starts puts of big blobs forever; killed with SIGKILL while temps are open.
    const script = `
      import { FsBlobStore } from ${JSON.stringify(path.resolve('lib/engine/repository/fs-blob-store.ts'))};
      const store = new FsBlobStore(${JSON.stringify(root)});
      const big = Buffer.alloc(64 * 1024 * 1024, 1);
      let i = 0;
      for (;;) await Promise.all([0, 1, 2, 3].map(() => store.put('chunks/ab/' + (i++).toString(16).padStart(4, '0'), big)));`;
    const writer = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'ignore' });
    try {
      for (let tries = 0; ; tries++) {
        const temps = await tempFiles(root).catch(() => []);
        if (temps.length > 0) break;
        if (tries > 600) throw new Error('the writer made no temp file');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Alive: its temps are kept.
      const store = new FsBlobStore(root);
      const whileRunning = await store.sweepTemporaryFiles();
      expect(whileRunning.removed).toBe(0);
    } finally {
      writer.kill('SIGKILL');
      await new Promise((resolve) => writer.on('exit', resolve));
    }
    expect((await tempFiles(root)).length).toBeGreaterThan(0);
    const after = await new FsBlobStore(root).sweepTemporaryFiles();
    expect(after.removed).toBeGreaterThan(0);
    expect(await tempFiles(root)).toEqual([]);
  });
});

/** Real file systems that fail: a tiny tmpfs (needs root and mount; skipped with the reason otherwise). */
const canMount = await canMountTmpfs();
afterAll(unmountTmpfs);

describe.skipIf(!canMount)('FsBlobStore on a real full file system (tmpfs; skipped when mount is not permitted)', () => {
  it('fails a put with ENOSPC on a full disk, leaving no blob and no temp file', async () => {
    const root = (await mountTmpfs('size=1m'))!;
    const store = new FsBlobStore(root);
    await store.put('chunks/aa/small', Buffer.alloc(100_000, 1));
    await expect(store.put('chunks/bb/big', Buffer.alloc(2 * 1024 * 1024, 2))).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(await store.has('chunks/bb/big')).toBe(false);
    expect(await tempFiles(root)).toEqual([]);
    expect((await store.get('chunks/aa/small')).length).toBe(100_000);
  });

  it('works with a top folder on another file system (a disk mounted at chunks/): renames stay inside it', async () => {
    const root = await tempDir();
    const chunks = (await mountTmpfs('size=4m'))!;
    await fs.symlink(chunks, path.join(root, 'chunks'));
    const store = new FsBlobStore(root);
    await store.put('chunks/ab/x', Buffer.alloc(1000, 1));
    await store.put('images/i.json', Buffer.from('{}'));
    await store.flush();
    expect((await store.get('chunks/ab/x')).length).toBe(1000);
    expect(await fs.readdir(path.join(chunks, 'ab'))).toEqual(['x']);
  });

  it('reports the real cause when no folder can be made (Node\'s recursive mkdir says ENOENT)', async () => {
    // Out of inodes: mkdir fails with ENOSPC, which fs.mkdir({ recursive: true }) reports as ENOENT.
    const full = (await mountTmpfs('size=1m,nr_inodes=4'))!;
    const store = new FsBlobStore(full);
    await store.put('a', Buffer.of(1)); // the root's .tmp/ and one file: the inodes are gone
    await fs.writeFile(path.join(full, 'filler'), '').catch(() => undefined);
    await expect(store.put('chunks/72/x', Buffer.of(1))).rejects.toMatchObject({ code: 'ENOSPC' });

    const readOnly = (await mountTmpfs('size=1m,ro'))!;
    await expect(new FsBlobStore(readOnly).put('chunks/72/x', Buffer.of(1))).rejects.toMatchObject({ code: 'EROFS' });
  });
});

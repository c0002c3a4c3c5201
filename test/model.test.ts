/**
 * Randomized, seeded, model-based test of backup and restore through the real CLI (issue 9, "Tests").
 *
 * Per seed: a random fleet of real images (test/model/fleet-model.ts), backups with random edits and drift
 * between them, then every VM restored from every backup to fresh folders (policy overwrite; policy
 * no-overwrite with the copy choice) and some in place. Each result is compared with what the model says
 * it must be: byte identity of what has nothing to rewrite, the guest view of every disk through its chain
 * (`qemu-img compare`), `qemu-img check`, `qemu-img info --backing-chain`, file names and places, and that no
 * file outside the target (in place: outside the VM's own files) changed.
 *
 * `npm test` runs seeds 1–3. VMDEDUP_MODEL_SEEDS=50 runs seeds 1–50 (or a range: =51-100); VMDEDUP_MODEL_SEED=<n>
 * replays one seed (each seed's run depends on the seed alone); VMDEDUP_MODEL_VERBOSE=1 lists every check that passed;
 * VMDEDUP_MODEL_KEEP=1 keeps every seed's folder (a failing seed's folder is always kept).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { updateSource } from '../lib/services/sources/update-source';
import {
  DRIFT_KINDS, type DiskAtBackup, type EditKind, type Fleet, type FileHashes, type VmRecord, ViewStore, backingChain, buildFleet, diffHashes, hashTree,
  configShape, isInside, pairKey, randomEdit, readConfigSlots, recordNow, recordRound, relocateSource, sha256File, statTree, tool, vmdkDescriptor,
} from './model/fleet-model';
import { cli, createTestDatabase, tempDir } from './helpers';

function chooseSeeds(): number[] {
  const one = process.env.VMDEDUP_MODEL_SEED;
  if (one) return [Number(one)];
  // VMDEDUP_MODEL_SEEDS=50 runs seeds 1–50; VMDEDUP_MODEL_SEEDS=51-100 a range.
  const [from, to] = /^(\d+)-(\d+)$/.exec(process.env.VMDEDUP_MODEL_SEEDS ?? '')?.slice(1).map(Number) ?? [1, Number(process.env.VMDEDUP_MODEL_SEEDS || 3)];
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

type RestoreJson = { status: string; config?: string; disks?: { path: string; action: string; sharedWith?: string[]; written?: string[] }[] };
type FolderMode = 'overwrite' | 'copy';
/** Where a restore wrote: a fresh folder, or in place (with the fleet's hashes from just before). */
type Where = { kind: 'folder'; target: string } | { kind: 'in-place'; before: FileHashes; created: Set<string> };

describe('model-based backup and restore (CLI, real images)', () => {
  for (const seed of chooseSeeds()) {
    it(`seed ${seed}`, async () => {
      const run = new SeedRun(seed);
      try {
        await run.run();
      } finally {
        console.log(run.report());
      }
      expect(run.failures.length, run.summary()).toBe(0);
      if (!process.env.VMDEDUP_MODEL_KEEP) await fs.rm(run.home, { recursive: true, force: true });
    }, 600_000);
  }
});

class SeedRun {
  home = '';
  fleet!: Fleet;
  env: Record<string, string> = {};
  views!: ViewStore;
  readonly failures: string[] = [];
  readonly records: VmRecord[] = [];
  private restores = 0;

  constructor(readonly seed: number) {}

  fail(step: string, check: string, detail: string): void {
    this.failures.push(`seed ${this.seed}, ${step}: [${check}] ${detail}`);
    this.pending.get(step)?.push(`    FAIL [${check}] ${detail}`) ?? this.fleet.note(`    FAIL [${check}] ${detail}`);
  }

  /** Lines of a step that runs beside others are kept together in the log. */
  private readonly pending = new Map<string, string[]>();
  private begin(step: string): void {
    this.pending.set(step, []);
  }
  /** Ends a step: its summary line (with `{result}` replaced by ok or its failure count), then its failures. */
  private end(step: string, line: string, always = false): number {
    const lines = this.pending.get(step) ?? [];
    this.pending.delete(step);
    this.steps++;
    // Steps that pass are counted, and listed only with VMDEDUP_MODEL_VERBOSE=1.
    if (lines.length || always || process.env.VMDEDUP_MODEL_VERBOSE) this.fleet.note(line.replace('{result}', lines.length ? `${lines.length} FAILURE(S)` : 'ok'));
    if (!lines.length) this.passed++;
    for (const l of lines) this.fleet.note(l);
    return lines.length;
  }
  private steps = 0;
  private passed = 0;

  /** The failures by check, one example each: the assertion message (the full list is in the log). */
  summary(): string {
    const byCheck = new Map<string, string[]>();
    for (const failure of this.failures) {
      const check = /\[([a-z-]+)\]/.exec(failure)?.[1] ?? '?';
      byCheck.set(check, [...(byCheck.get(check) ?? []), failure]);
    }
    return [...byCheck].map(([check, list]) => `${list.length} x ${check}, e.g. ${list[0]}`).join('\n');
  }

  report(): string {
    return [`=== model seed ${this.seed} (replay: VMDEDUP_MODEL_SEED=${this.seed}; folder ${this.home})`, ...(this.fleet?.log ?? []),
      `=== seed ${this.seed}: ${this.steps} restores checked, ${this.passed} passed; ${this.failures.length} failure(s)`].join('\n');
  }

  async run(): Promise<void> {
    this.home = await tempDir(`vmdedup-model-${this.seed}-`);
    const started = Date.now();
    this.fleet = await buildFleet(path.join(this.home, 'fleet'), this.seed);
    const { fleet } = this;
    fleet.note(`built in ${Date.now() - started} ms:`);
    for (const line of fleet.describe()) fleet.note(line);
    this.views = new ViewStore(path.join(this.home, 'model'));
    this.env = { VMDEDUP_HOME: path.join(this.home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    for (const source of fleet.sources) {
      const added = await cli(this.env, 'source', 'add', source.name, '--type', source.type, '--path', source.root);
      if (added.code !== 0) throw new Error(`source add ${source.name}: ${added.stderr}`);
    }

    // Two backups with edits between them, then drift: every restore meets history and drift (bounded time).
    for (let round = 1; round <= 2; round++) {
      if (round > 1) await this.edits(fleet.rng.int(2, 4), `edits before backup #${round}`);
      await this.backup(round);
    }
    await this.edits(fleet.rng.int(2, 3), 'drift after the last backup', DRIFT_KINDS);
    if (fleet.rng.chance(0.5)) await this.relocate();

    fleet.note(`restores to folders (${Date.now() - started} ms so far):`);
    const live = await hashTree(fleet.dir);
    const jobs = this.records.flatMap((record) => (['overwrite', 'copy'] as const).map((mode) => ({ record, mode })));
    await mapLimit(jobs, 3, ({ record, mode }) => this.restoreToFolder(record, mode, live));
    const after = await hashTree(fleet.dir);
    const { changed, created, deleted } = diffHashes(live, after);
    for (const file of [...changed, ...created, ...deleted]) this.fail('folder restores', 'fleet-changed', `${fleet.show(file)} changed during restores to folders`);

    fleet.note(`restores in place (${Date.now() - started} ms so far):`);
    await this.inPlaceRestores();
    fleet.note(`done in ${Date.now() - started} ms`);
  }

  /** A source's folder moves, and the source is pointed at it as the dashboard's "edit source" does. */
  async relocate(): Promise<void> {
    const moved = await relocateSource(this.fleet);
    if (!moved) return;
    const sql = new pg.Pool({ connectionString: this.env.DATABASE_URL, max: 1 });
    try {
      const { rows: [row] } = await sql.query<{ id: string }>('SELECT "id" FROM "Source" WHERE "name" = $1', [moved.source.name]);
      await updateSource(sql, { id: row.id, name: moved.source.name, type: moved.source.type, path: moved.source.root });
    } finally {
      await sql.end();
    }
    this.fleet.note(`  relocate: source ${moved.source.name} moved ${this.fleet.show(moved.from)} -> ${this.fleet.show(moved.source.root)} (source path updated)`);
  }

  async edits(count: number, why: string, kinds?: readonly EditKind[]): Promise<void> {
    this.fleet.note(`${why}:`);
    for (let i = 0; i < count; i++) {
      const done = await randomEdit(this.fleet, kinds);
      if (done) this.fleet.note(`  ${done}`);
    }
  }

  /** `vmdedup backup --source <s> --json` for every source; checks who was backed up and records what each image must hold. */
  async backup(round: number): Promise<VmRecord[]> {
    const { fleet } = this;
    const step = `backup #${round}`;
    const t0 = Date.now();
    const before = await hashTree(fleet.dir);
    const ids = new Map<string, string>();
    const expected = fleet.pairs().map((p) => ({ ...p, broken: fleet.broken(p.vm) }));
    for (const source of fleet.sources) {
      const result = await cli(this.env, 'backup', '--source', source.name, '--json');
      const mine = expected.filter((e) => e.source === source);
      let report: { backups: { vm: string; backupId: string }[]; failures: { vm: string; error: string }[] };
      try {
        report = JSON.parse(result.stdout);
      } catch {
        this.fail(step, 'backup-exit', `source ${source.name}: exit ${result.code}, no JSON: ${firstLine(result.stderr)}`);
        continue;
      }
      const done = new Map(report.backups.map((b) => [pairKey(source.name, b.vm), b.backupId]));
      const failed = new Map(report.failures.map((f) => [pairKey(source.name, f.vm), f.error]));
      for (const { key, broken } of mine) {
        if (broken && done.has(key)) this.fail(step, 'backup-of-broken-vm', `${key} was backed up though it ${broken}`);
        if (!broken && !done.has(key)) this.fail(step, 'backup-missing', `${key} was not backed up: ${failed.get(key) ?? 'not in the report'}`);
        if (broken && !failed.has(key)) this.fail(step, 'backup-failure-unreported', `${key} ${broken}, and the report does not say so`);
      }
      for (const key of [...done.keys(), ...failed.keys()]) {
        if (!mine.some((e) => e.key === key)) this.fail(step, 'backup-unexpected-vm', `${key} is not a VM of the fleet`);
      }
      const wantCode = mine.some((e) => e.broken) ? 2 : 0;
      if (result.code !== wantCode) this.fail(step, 'backup-exit', `source ${source.name}: exit ${result.code}, expected ${wantCode}: ${firstLine(result.stderr)}`);
      for (const [key, id] of done) ids.set(key, id);
    }
    const t1 = Date.now();
    const after = await hashTree(fleet.dir);
    for (const file of Object.values(diffHashes(before, after)).flat()) this.fail(step, 'backup-changed-fleet', fleet.show(file));
    const t2 = Date.now();
    const records = await recordRound(fleet, round, before, this.views, ids);
    const broken = expected.filter((e) => e.broken).map((e) => `${e.key} fails: ${e.broken}`).join('; ');
    fleet.note(`${step} (backups ${t1 - t0} ms, model ${Date.now() - t2} ms): ${records.length} images (${broken || 'no VM fails'})`);
    for (const record of records) {
      for (const disk of record.disks) if (disk.viewError) fleet.note(`  model: no guest view of ${fleet.show(disk.path)}: ${disk.viewError}`);
    }
    this.records.push(...records);
    return records;
  }

  async restoreToFolder(record: VmRecord, mode: FolderMode, live: FileHashes): Promise<void> {
    const box = path.join(this.home, 'restores', String(++this.restores));
    const target = path.join(box, 'target');
    const step = `restore ${record.key} from backup #${record.round} (${record.backupId}) to a folder, ${mode === 'overwrite' ? 'policy overwrite' : 'no-overwrite, choice copy'}`;
    const args = ['restore', record.vm.name, '--backup', record.backupId, '--target', target, '--confirm-drift', '--json',
      ...(mode === 'overwrite' ? ['--policy', 'overwrite'] : ['--choice', 'copy'])];
    this.begin(step);
    const before = await statTree(this.fleet.dir);
    const t0 = Date.now();
    const result = await cli(this.env, ...args);
    const t1 = Date.now();
    const after = await statTree(this.fleet.dir);
    for (const file of Object.values(diffHashes(before, after)).flat()) this.fail(step, 'folder-restore-changed-fleet', this.fleet.show(file));
    const outside = await listFiles(box).then((files) => files.filter((f) => !isInside(target, f)));
    if (outside.length) this.fail(step, 'wrote-outside-target', `beside the target: ${outside.map((f) => path.relative(box, f)).join(', ')}`);
    const json = this.restoredOk(step, result);
    if (json) {
      this.checkSharedWith(step, record, json);
      this.checkPlanNamesWrites(step, json, await listFiles(box), { kind: 'folder', target });
      await this.checkVm(step, record, mode, { kind: 'folder', target }, live);
    }
    this.end(step, `  ${step}: {result} (restore ${t1 - t0} ms, check ${Date.now() - t1} ms)`);
  }

  private restoredOk(step: string, result: { code: number; stdout: string; stderr: string }): RestoreJson | undefined {
    let json: RestoreJson | undefined;
    try {
      json = JSON.parse(result.stdout) as RestoreJson;
    } catch { /* reported below */ }
    if (result.code !== 0 || json?.status !== 'restored') {
      this.fail(step, 'restore-failed', `exit ${result.code}, status ${json?.status ?? '-'}: ${firstLine(result.stderr) || json?.status}`);
      return undefined;
    }
    return json;
  }

  /** The restore must write exactly the files its plan names (every disk file, and the config): nothing unannounced. */
  private checkPlanNamesWrites(step: string, json: RestoreJson, wrote: string[], where: Where): void {
    if (!json.disks?.every((d) => Array.isArray(d.written)) || !json.config) return;
    const named = new Set([json.config, ...json.disks.flatMap((d) => d.written!)]);
    for (const file of wrote) if (!named.has(file)) this.fail(step, 'write-not-in-plan', `${this.where(where, file)} was written; the plan shown does not name it`);
  }

  /** Who the restore says uses each disk now must be who does (live, every source, broken configs, later users). */
  private checkSharedWith(step: string, record: VmRecord, json: RestoreJson): void {
    const { fleet } = this;
    const own = fleet.now(record.vm.configPath);
    for (const reported of json.disks ?? []) {
      if (!reported.sharedWith) continue;
      const disk = record.disks.filter((d) => reported.path.endsWith(`/${d.relPath}`)).sort((a, b) => b.relPath.length - a.relPath.length)[0];
      if (!disk) continue;
      const said = [...new Set(reported.sharedWith.map((label) => label.replace(/ \(source [^)]*\)$/, '')))].sort();
      const users = [...new Set(fleet.usersNow(fleet.now(disk.path)).filter((vm) => vm.configPath !== own).map((vm) => vm.name))].sort();
      if (said.join(',') !== users.join(',')) this.fail(step, 'shared-with', `${path.basename(disk.path)}: the restore says it is used now by [${said.join(', ')}], the fleet has [${users.join(', ')}]`);
    }
  }

  /**
   * The restored VM against the model: its config names the backed-up slots; each slot's chain is made of the
   * backed-up disks, each one either written by this restore (under its own name) or, where the policy allows,
   * the live disk unchanged since the backup; every disk reads like the backup; written images pass `qemu-img check`.
   */
  async checkVm(step: string, record: VmRecord, mode: FolderMode, where: Where, live: FileHashes): Promise<void> {
    const { fleet } = this;
    const configPath = where.kind === 'folder' ? path.join(where.target, record.configRel) : recordNow(fleet, record).configPath;
    const expectedFiles = new Set<string>();
    if (where.kind === 'folder') {
      expectedFiles.add(configPath);
      for (const disk of record.disks) for (const file of disk.files) expectedFiles.add(path.join(where.target, file.relPath));
      const found = await listFiles(where.target);
      for (const file of found) {
        if (expectedFiles.has(file)) continue;
        // A file under a name the model does not expect: say whose bytes it holds (a disk restored under another disk's name).
        const sha = await sha256File(file);
        const twin = record.disks.flatMap((d) => d.files).find((f) => f.sha256 === sha);
        this.fail(step, 'unexpected-file', `${path.relative(where.target, file)} in the target${twin ? ` holds the bytes of ${twin.relPath}` : ''} (expected only ${[...expectedFiles].map((f) => path.relative(where.target, f)).join(', ')})`);
      }
    }
    let slots;
    try {
      slots = await readConfigSlots(configPath, record.vm.type);
    } catch (err) {
      this.fail(step, 'config-missing', `${where.kind === 'folder' ? path.relative(where.target, configPath) : configPath}: ${(err as Error).message}`);
      return;
    }
    const shape = configShape(await fs.readFile(configPath, 'utf8'), record.vm.type);
    if (shape !== configShape(record.configText, record.vm.type)) this.fail(step, 'config-changed', `${path.basename(configPath)} differs from the backed-up config beyond its disk paths`);
    const slotNames = (list: { slot: string }[]) => list.map((s) => s.slot).sort().join(',');
    if (slotNames(slots) !== slotNames(record.vm.slots)) this.fail(step, 'config-slots', `slots ${slotNames(slots)}, backed up ${slotNames(record.vm.slots)}`);
    const byPath = new Map(record.disks.map((d) => [d.path, d]));
    const checked = new Set<string>();
    for (const slot of record.vm.slots) {
      const restored = slots.find((s) => s.slot === slot.slot);
      if (!restored) continue;
      const label = `${slot.slot}`;
      if (restored.format !== slot.format) this.fail(step, 'config-format', `${label}: driver type ${restored.format}, backed up ${slot.format}`);
      const want = chainAt(byPath, slot.disk);
      if (!(await fs.access(restored.file).then(() => true, () => false))) {
        this.fail(step, 'disk-missing', `${label} points at ${this.where(where, restored.file)}, which does not exist`);
        continue;
      }
      let chain;
      try {
        chain = await backingChain(restored.file, slot.format);
      } catch (err) {
        this.fail(step, 'chain-does-not-resolve', `${label} -> ${this.where(where, restored.file)}: ${firstLine((err as Error).message)}`);
        continue;
      }
      if (chain.length !== want.length) {
        this.fail(step, 'chain-length', `${label}: restored chain ${chain.map((e) => this.where(where, e.file)).join(' -> ')}, backed up ${want.map((d) => fleet.show(d.path)).join(' -> ')}`);
        continue;
      }
      for (let i = 0; i < want.length; i++) {
        const disk = want[i];
        const element = chain[i];
        const at = this.placeOf(step, record, disk, element.file, mode, where, live);
        if (!at) break;
        if (checked.has(element.file)) continue;
        checked.add(element.file);
        await this.checkDisk(step, record, disk, element, chain[i + 1], at, where);
      }
    }
  }

  /** Where a chain element may lie: 'written' by this restore, or 'live' (the disk as it is, unchanged since the backup). */
  private placeOf(step: string, record: VmRecord, disk: DiskAtBackup, file: string, mode: FolderMode, where: Where, live: FileHashes): 'written' | 'live' | undefined {
    const { fleet } = this;
    const livePath = fleet.now(disk.path);
    const privateDisk = [...new Set([...(record.pairUsers.get(disk.path) ?? []), ...fleet.pairUsersNow(livePath)])].every((key) => key === record.key);
    const unchanged = disk.files.every((f) => live.get(fleet.now(f.path)) === f.sha256);
    if (where.kind === 'folder') {
      if (file === path.join(where.target, disk.relPath)) return 'written';
      if (file === livePath && mode === 'copy' && !privateDisk) {
        if (unchanged) return 'live';
        this.fail(step, 'points-at-changed-disk', `${fleet.show(disk.path)} changed since the backup, and the restored VM points at it as it is now`);
        return undefined;
      }
      const why = privateDisk ? ' (a private disk: it must be restored into the target)' : mode === 'overwrite' ? ' (policy overwrite: every disk is restored into the target)' : '';
      this.fail(step, 'wrong-disk-file', `${path.basename(disk.path)} (${disk.role}) is ${this.where(where, file)}, expected ${path.join('<target>', disk.relPath)}${mode === 'copy' && !privateDisk ? ` or the live ${fleet.show(livePath)}` : ''}${why}`);
      return undefined;
    }
    if (file === livePath) return 'written';
    // No-overwrite keeps a disk other VMs use (now or at the backup); a copy restored beside the VM carries the disk's own name.
    if (where.created.has(file) && path.basename(file) === path.basename(disk.path) && mode === 'copy' && !privateDisk && isInside(recordNow(fleet, record).root, file)) return 'written';
    this.fail(step, 'wrong-disk-file', `${path.basename(disk.path)} (${disk.role}) is ${this.where(where, file)}, expected ${fleet.show(livePath)}${mode === 'copy' ? ' (or a copy beside the VM, when another VM uses it now)' : ''}`);
    return undefined;
  }

  private where(where: Where, file: string): string {
    return where.kind === 'folder' && isInside(where.target, file) ? path.join('<target>', path.relative(where.target, file)) : this.fleet.show(file);
  }

  /** One disk of a restored chain: bytes, guest view, size, format, `qemu-img check`, the VMDK parentCID. */
  private async checkDisk(step: string, record: VmRecord, disk: DiskAtBackup, element: { file: string; format: string; virtualSize: number }, parent: { file: string } | undefined, at: 'written' | 'live', where: Where): Promise<void> {
    const name = `${path.basename(disk.path)} (${disk.role}) at ${this.where(where, element.file)}`;
    if (element.format !== disk.format) this.fail(step, 'disk-format', `${name}: ${element.format}, backed up ${disk.format}`);
    if (!disk.parent) {
      // Nothing to rewrite in a disk without a parent: it must come back byte for byte (every file of it).
      for (const file of disk.files) {
        const restoredFile = path.join(path.dirname(element.file), path.relative(path.dirname(disk.path), file.path));
        const sha = await sha256File(restoredFile).catch(() => 'missing');
        if (sha !== file.sha256) this.fail(step, 'bytes-differ', `${this.where(where, restoredFile)} is not byte-identical to ${path.basename(file.path)} at the backup${sha === 'missing' ? ' (missing)' : ''}`);
      }
    }
    if (disk.view) {
      if (element.virtualSize !== disk.view.virtualSize) this.fail(step, 'virtual-size', `${name}: ${element.virtualSize}, backed up ${disk.view.virtualSize}`);
      try {
        await tool('qemu-img', 'compare', '-f', 'raw', '-F', disk.format, disk.view.file, element.file);
      } catch (err) {
        this.fail(step, 'guest-view-differs', `${name} does not read like ${this.fleet.show(disk.path)} at the backup: ${firstLine((err as Error).message)}`);
      }
    }
    if (disk.format === 'vmdk' && parent) {
      const [child, up] = await Promise.all([vmdkDescriptor(element.file), vmdkDescriptor(parent.file)]);
      // CIDs are 32-bit hex numbers: qemu writes them without leading zeros, other writers with; both read the same.
      if (child.parentCid === undefined || up.cid === undefined || parseInt(child.parentCid, 16) !== parseInt(up.cid, 16)) this.fail(step, 'vmdk-parent-cid', `${name}: parentCID ${child.parentCid}, its parent ${this.where(where, parent.file)} has CID ${up.cid}`);
    }
    if (at === 'written' && disk.format !== 'raw') {
      await tool('qemu-img', 'check', '-q', '-f', disk.format, element.file).catch((err: Error) => this.fail(step, 'qemu-img-check', `${name}: ${firstLine(err.message)}`));
    }
  }

  /** In-place restores of a few VMs, the fleet hashed around each: only the VM's own files may change. */
  async inPlaceRestores(): Promise<void> {
    const { fleet } = this;
    const identical = (record: VmRecord) => record.disks.some((d) => d.files.some((f) => this.records.some((other) => other.vm.configPath !== record.vm.configPath
      && other.disks.some((o) => o.files.some((g) => g.sha256 === f.sha256 && g.path !== f.path)))));
    const candidates = fleet.rng.shuffle(this.records).sort((a, b) => Number(identical(b)) - Number(identical(a)));
    const chosen: VmRecord[] = [];
    for (const record of candidates) {
      if (chosen.length >= 2) break;
      if (!chosen.some((c) => c.vm.configPath === record.vm.configPath)) chosen.push(record);
    }
    let mode: FolderMode = fleet.rng.chance(0.5) ? 'overwrite' : 'copy';
    const restored: string[] = [];
    for (const record of chosen) {
      const ok = await this.restoreInPlace(record, mode);
      if (!ok) {
        fleet.note('  further in-place restores skipped: the fleet no longer matches the model');
        return;
      }
      restored.push(record.vm.configPath);
      mode = mode === 'overwrite' ? 'copy' : 'overwrite';
    }
    // A backup of the fleet as the in-place restores left it, and a folder restore of each restored VM from it.
    const records = await this.backup(99);
    const live = await hashTree(fleet.dir);
    for (const record of records.filter((r) => restored.includes(r.vm.configPath))) await this.restoreToFolder(record, 'overwrite', live);
  }

  async restoreInPlace(record: VmRecord, mode: FolderMode): Promise<boolean> {
    const { fleet } = this;
    const step = `restore ${record.key} from backup #${record.round} (${record.backupId}) in place, ${mode === 'overwrite' ? 'policy overwrite' : 'no-overwrite, choice copy'}`;
    const now = recordNow(fleet, record);
    this.begin(step);
    const before = await hashTree(fleet.dir);
    const statsBefore = await statTree(fleet.dir);
    const args = ['restore', record.vm.name, '--backup', record.backupId, '--in-place', '--confirm-drift', '--json',
      ...(mode === 'overwrite' ? ['--policy', 'overwrite'] : ['--choice', 'copy'])];
    const result = await cli(this.env, ...args);
    const after = await hashTree(fleet.dir);
    const { changed, created, deleted } = diffHashes(before, after);
    // Written = replaced or touched, even with the same bytes (a blank disk written over another VM's blank disk).
    const written = diffHashes(statsBefore, await statTree(fleet.dir)).changed.filter((f) => before.has(f));
    // What this restore may write: the VM's config; its disks (policy overwrite), or those no other VM uses now.
    const mine = new Set<string>([now.configPath]);
    for (const disk of record.disks) {
      const others = fleet.usersNow(now.disk(disk)).filter((vm) => vm.configPath !== now.configPath);
      if (mode === 'overwrite' || others.length === 0) for (const file of disk.files) mine.add(fleet.now(file.path));
    }
    const names = new Set(record.disks.flatMap((d) => d.files.map((f) => path.basename(f.path))));
    // Another file written with its own bytes leaves the fleet as the model has it; changed content does not.
    const modelIntact = !changed.some((f) => !mine.has(f)) && deleted.length === 0;
    for (const file of written.filter((f) => !mine.has(f))) {
      const users = [...fleet.disks.values()].filter((d) => fleet.filesOf(d.path).includes(file)).flatMap((d) => fleet.usersNow(d.path).map((vm) => vm.name));
      this.fail(step, 'in-place-wrote-another-file', `${fleet.show(file)} was ${changed.includes(file) ? 'changed' : 'written (same bytes)'}${users.length ? `; it is a disk of ${[...new Set(users)].join(', ')}` : ''}`);
    }
    for (const file of created.filter((f) => !mine.has(f) && !(names.has(path.basename(f)) && isInside(now.root, f)))) this.fail(step, 'in-place-created-unexpected-file', fleet.show(file));
    for (const file of deleted) this.fail(step, 'in-place-deleted-file', fleet.show(file));
    const restored = this.restoredOk(step, result);
    if (restored) {
      this.checkSharedWith(step, record, restored);
      this.checkPlanNamesWrites(step, restored, [...written, ...created], { kind: 'in-place', before, created: new Set(created) });
      await this.checkVm(step, record, mode, { kind: 'in-place', before, created: new Set(created) }, after);
    }
    const vmFailed = this.pending.get(step)!.some((line) => !/in-place-(wrote|created)/.test(line));
    this.end(step, `  ${step}: {result}; wrote ${written.map((f) => fleet.show(f)).join(', ') || 'nothing'}; created ${created.map((f) => fleet.show(f)).join(', ') || 'nothing'}`, true);
    // A failed restore that wrote nothing leaves the fleet as the model has it.
    if (!restored && modelIntact && written.length === 0 && created.length === 0) return true;
    if (!modelIntact || vmFailed) return false;
    await this.adoptRestoredVm(record);
    return true;
  }

  /** After a verified in-place restore, the model takes the VM's config and chains as restored. */
  private async adoptRestoredVm(record: VmRecord): Promise<void> {
    const { fleet } = this;
    const vm = fleet.vms.find((v) => v.configPath === fleet.now(record.vm.configPath))!;
    const slots = await readConfigSlots(vm.configPath, vm.type);
    const byName = new Map(record.disks.map((d) => [path.basename(d.path), d]));
    vm.slots = [];
    for (const slot of slots) {
      const backedUp = record.vm.slots.find((s) => s.slot === slot.slot)!;
      const chain = await backingChain(slot.file, backedUp.format);
      for (let i = chain.length - 1; i >= 0; i--) {
        const element = chain[i];
        const disk = byName.get(path.basename(element.file))!;
        const known = fleet.disks.get(element.file);
        fleet.disks.set(element.file, {
          path: element.file, format: disk.format, parent: chain[i + 1]?.file, pointer: element.backing,
          extents: disk.files.slice(1).map((f) => path.join(path.dirname(element.file), path.relative(path.dirname(disk.path), f.path))),
          virtualSize: element.virtualSize, role: known?.role ?? disk.role,
        });
      }
      vm.slots.push({ ...backedUp, disk: chain[0].file });
    }
  }
}

/** A disk's chain as one backup recorded it. */
function chainAt(byPath: Map<string, DiskAtBackup>, diskPath: string): DiskAtBackup[] {
  const out: DiskAtBackup[] = [];
  for (let at: string | undefined = diskPath; at; at = byPath.get(at)?.parent) out.push(byPath.get(at)!);
  return out;
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => !e.isDirectory()).map((e) => path.join(e.parentPath, e.name));
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}

async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

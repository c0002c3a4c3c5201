/**
 * What one scan of a source parsed, kept for the next: a VM pool's configs and disk headers rarely change between
 * two backups, and parsing them is most of a scan of thousands of small VMs.
 *
 * - A **config** is parsed again unless its bytes are the very bytes parsed last time (SHA-256, and the same path:
 *   relative disk paths resolve against it). The parse is a function of path and bytes, so this changes nothing.
 * - A **qcow2 or raw disk's header** (format, backing file, size) is read again unless the fstat of the opened file
 *   shows the inode, size, mtime and ctime it showed when the header was read, that read was not racily clean (see
 *   version-token.ts) and is under a day old. That is the fast path's own trust in a version token, for a few
 *   bytes of header instead of the whole disk; the token itself is always taken from the fresh fstat. VMDK
 *   descriptors (and their extents) are always read.
 *
 * Errors are never remembered: a config or disk that failed is read again. Entries the scan did not meet are
 * dropped when it is saved.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { DiskFormat, DiskSlot } from './types';
import { tooRecentToTrust } from './version-token';

const VERSION = 1;
/** A remembered header is read again after this long, whatever its file shows (a tool that puts timestamps back). */
const HEADER_MAX_AGE_MS = 24 * 3600 * 1000;

/** A config as parsed (without its bytes); null: well-formed, but not a VM (a libvirt network definition). */
export type ParsedConfig = { name: string; uuid: string; slots: DiskSlot[] } | null;

/** What a disk's header said: its format and size, and the parent it names as written (resolved, not canonical). */
export type DiskHeader = { format: DiskFormat; virtualSize?: number; parent?: { pointer: string; path: string; format?: DiskFormat } };

type ConfigEntry = { digest: string; parsed: ParsedConfig };
type HeaderEntry = { stat: string; readAtMs: number; header: DiskHeader };

export class ScanMemo {
  private readonly configs = new Map<string, ConfigEntry>();
  private readonly headers = new Map<string, HeaderEntry>();
  private readonly metConfigs = new Set<string>();
  private readonly metHeaders = new Set<string>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The parse of these bytes at this path, when the last scan parsed the same; undefined otherwise. */
  config(configPath: string, bytes: Buffer): ParsedConfig | undefined {
    this.metConfigs.add(configPath);
    const entry = this.configs.get(configPath);
    return entry && entry.digest === digestOf(bytes) ? structuredClone(entry.parsed) : undefined;
  }

  rememberConfig(configPath: string, bytes: Buffer, parsed: ParsedConfig): void {
    this.metConfigs.add(configPath);
    this.configs.set(configPath, { digest: digestOf(bytes), parsed: structuredClone(parsed) });
  }

  /** Whether a header of this file is remembered at all (then its file is worth a stat before it is opened). */
  knowsHeader(canonical: string, hint: DiskFormat | undefined): boolean {
    return this.headers.has(headerKey(canonical, hint));
  }

  /** The header read under this very fstat, when it can be trusted (see above); undefined otherwise. */
  header(canonical: string, hint: DiskFormat | undefined, stat: BigIntStats): DiskHeader | undefined {
    const key = headerKey(canonical, hint);
    this.metHeaders.add(key);
    const entry = this.headers.get(key);
    if (!entry || entry.stat !== statKey(stat) || this.now() - entry.readAtMs > HEADER_MAX_AGE_MS || entry.readAtMs > this.now()) return undefined;
    return structuredClone(entry.header);
  }

  /** Remembers a header read from the opened file whose fstat (taken at `statAtNs`) is `stat`, unless racily clean. */
  rememberHeader(canonical: string, hint: DiskFormat | undefined, stat: BigIntStats, statAtNs: bigint, header: DiskHeader): void {
    const key = headerKey(canonical, hint);
    this.metHeaders.add(key);
    if (tooRecentToTrust(stat, statAtNs)) {
      this.headers.delete(key);
      return;
    }
    this.headers.set(key, { stat: statKey(stat), readAtMs: Number(statAtNs / 1_000_000n), header: structuredClone(header) });
  }

  /** Reads a memo saved by save(); an empty memo when there is none or it cannot be used (it is only a cache). */
  static async load(file: string, now?: () => number): Promise<ScanMemo> {
    const memo = new ScanMemo(now);
    const text = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (!text) return memo;
    try {
      const saved = JSON.parse(text) as { version?: unknown; configs?: unknown; headers?: unknown };
      if (saved.version !== VERSION || !Array.isArray(saved.configs) || !Array.isArray(saved.headers)) return memo;
      // Each entry checked for its shape: one that is not what save() writes is dropped, never used.
      for (const item of saved.configs as unknown[]) if (isPair(item) && isConfigEntry(item[1])) memo.configs.set(item[0], item[1]);
      for (const item of saved.headers as unknown[]) if (isPair(item) && isHeaderEntry(item[1])) memo.headers.set(item[0], item[1]);
    } catch {
      return new ScanMemo(now); // a memo torn by a crash: start afresh
    }
    return memo;
  }

  /** Writes what this scan met, atomically (a crash leaves the old memo or the new one); a removed VM's entries go. */
  async save(file: string): Promise<void> {
    const configs = [...this.configs].filter(([key]) => this.metConfigs.has(key));
    const headers = [...this.headers].filter(([key]) => this.metHeaders.has(key));
    await fs.mkdir(path.dirname(file), { recursive: true });
    const temp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      await fs.writeFile(temp, JSON.stringify({ version: VERSION, configs, headers }), { mode: 0o600 });
      await fs.rename(temp, file);
    } finally {
      await fs.rm(temp, { force: true });
    }
  }
}

function digestOf(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('base64');
}

function headerKey(canonical: string, hint: DiskFormat | undefined): string {
  return `${hint ?? ''}\0${canonical}`;
}

function statKey(stat: BigIntStats): string {
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
}

const FORMATS: readonly unknown[] = ['raw', 'qcow2', 'vmdk'];
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const optional = (value: unknown, type: 'string' | 'number') => value === undefined || typeof value === type;

function isPair(item: unknown): item is [string, unknown] {
  return Array.isArray(item) && item.length === 2 && typeof item[0] === 'string';
}

function isSlot(slot: unknown): slot is DiskSlot {
  return isObject(slot) && typeof slot.slot === 'string' && typeof slot.device === 'string'
    && typeof slot.shareable === 'boolean' && typeof slot.readonly === 'boolean' && typeof slot.backedUp === 'boolean'
    && (slot.format === undefined || FORMATS.includes(slot.format))
    && ['target', 'serial', 'wwn', 'mode', 'sharing', 'note'].every((field) => optional(slot[field], 'string'))
    && (slot.path === undefined || (typeof slot.path === 'string' && path.isAbsolute(slot.path)));
}

function isConfigEntry(entry: unknown): entry is ConfigEntry {
  if (!isObject(entry) || typeof entry.digest !== 'string') return false;
  const parsed = entry.parsed;
  return parsed === null || (isObject(parsed) && typeof parsed.name === 'string' && parsed.name !== '' && typeof parsed.uuid === 'string'
    && Array.isArray(parsed.slots) && parsed.slots.every(isSlot));
}

function isHeaderEntry(entry: unknown): entry is HeaderEntry {
  if (!isObject(entry) || typeof entry.stat !== 'string' || typeof entry.readAtMs !== 'number' || !Number.isFinite(entry.readAtMs)) return false;
  const header = entry.header;
  if (!isObject(header) || (header.format !== 'raw' && header.format !== 'qcow2') || !optional(header.virtualSize, 'number')) return false;
  const parent = header.parent;
  if (parent === undefined) return true;
  return header.format === 'qcow2' && isObject(parent) && typeof parent.pointer === 'string' && typeof parent.path === 'string' && path.isAbsolute(parent.path)
    && (parent.format === undefined || FORMATS.includes(parent.format));
}

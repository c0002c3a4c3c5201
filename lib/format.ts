/** Sizes and durations as people read them: one formatting for the CLI, the dashboard and the tests. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/** A size as people write it: 500M, 2G, 1.5TiB, 4096 (bytes); K, M, G, T are powers of 1024. Undefined when not one. */
export function parseByteSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|B)?$/i.exec(text.trim());
  if (!match) return undefined;
  const power = match[2] ? 'KMGT'.indexOf(match[2].toUpperCase()) + 1 : 0;
  return Math.round(Number(match[1]) * 1024 ** power);
}

/** What a restore does with a disk, in words (the dashboard and the CLI; JSON keeps the action's key). */
const RESTORE_ACTION_WORDS: Record<string, string> = {
  restored: 'restored from the backup',
  'skipped-common': 'kept as it is (common disk)',
  reattached: 'attached as it is now (common disk)',
  copied: 'restored as a separate copy',
  overwritten: 'overwritten in place with the backup',
};

export function restoreActionWords(action: string): string {
  return RESTORE_ACTION_WORDS[action] ?? action;
}

/**
 * A point in time as every screen and message shows it: `2026-12-01 06:48 UTC` (year first, 24 hours, the zone
 * named). `timeZone`: the zone to show it in (default: the process's, the reader's in a browser).
 */
export function formatTime(date: Date | string, options: { timeZone?: string; seconds?: boolean; dateOnly?: boolean } = {}): string {
  const at = typeof date === 'string' ? new Date(date) : date;
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', {
    timeZone: options.timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    ...(options.seconds ? { second: '2-digit' } : {}), hourCycle: 'h23', timeZoneName: 'short',
  }).formatToParts(at).map((part) => [part.type, part.value]));
  const day = `${parts.year}-${parts.month}-${parts.day}`;
  if (options.dateOnly) return day;
  return `${day} ${parts.hour}:${parts.minute}${options.seconds ? `:${parts.second}` : ''} ${parts.timeZoneName}`;
}

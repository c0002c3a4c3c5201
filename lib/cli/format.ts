/** Human output helpers for the CLI: a progress bar and tables (sizes and durations: lib/format.ts). */
import { formatBytes, formatDuration } from '../format';

/** A progress bar over bytes, or over items (VMs) when there are no bytes to count; with items, their count and rate. */
export function progressLine(options: {
  done: number; total: number; rate: number; eta?: number; label?: string; width?: number;
  items?: { done: number; total: number; perSecond: number; noun: string };
}): string {
  const width = options.width ?? 24;
  const { items } = options;
  const [done, total] = options.total === 0 && items ? [items.done, items.total] : [options.done, options.total];
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(fraction * width);
  const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
  const eta = options.eta === undefined ? '' : ` ETA ${formatDuration(options.eta)}`;
  const bytes = options.total === 0 && items ? '' : ` ${formatBytes(options.done)}/${formatBytes(options.total)} ${formatBytes(options.rate)}/s`;
  const counted = items ? ` ${items.done}/${items.total} ${items.noun} ${items.perSecond.toFixed(items.perSecond < 10 ? 1 : 0)}/s` : '';
  return `[${bar}] ${String(Math.floor(fraction * 100)).padStart(3)}%${bytes}${counted}${eta}${options.label ? `  ${options.label}` : ''}`;
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length)));
  return rows.map((row) => row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]))).join('  ')).join('\n');
}

/** Text is handed to `write` in pieces of about this many characters. */
const JSON_PIECE = 64 * 1024;

/**
 * Writes exactly what `JSON.stringify(value, null, 2)` makes, in pieces: a report of a pool's 10,000 VMs is never
 * one string in memory. Plain objects and arrays are walked; anything else (a Date, a value with `toJSON`) and
 * whatever lies below `walkDepth` is stringified whole.
 */
export function writeJson(value: unknown, write: (text: string) => void, walkDepth = 3): void {
  const pieces: string[] = [];
  let size = 0;
  const emit = (text: string) => {
    pieces.push(text);
    size += text.length;
    if (size >= JSON_PIECE) flush();
  };
  const flush = () => {
    if (pieces.length) write(pieces.join(''));
    pieces.length = 0;
    size = 0;
  };
  const walkable = (v: unknown): v is object => {
    if (typeof v !== 'object' || v === null) return false;
    if (Array.isArray(v)) return true;
    const proto = Object.getPrototypeOf(v);
    return (proto === Object.prototype || proto === null) && typeof (v as { toJSON?: unknown }).toJSON !== 'function';
  };
  // The text of a value that is not walked, indented at `indent`; undefined where it has no JSON form (a function).
  const whole = (v: unknown, indent: string): string | undefined => JSON.stringify(v, null, 2)?.replaceAll('\n', `\n${indent}`);
  // Emits a walkable value at `indent` (its first line is placed by the caller).
  const walk = (v: object, indent: string, depth: number) => {
    const inner = `${indent}  `;
    const items: [string, unknown][] = Array.isArray(v) ? Array.from(v, (item): [string, unknown] => ['', item]) : Object.entries(v).map(([key, item]) => [`${JSON.stringify(key)}: `, item]);
    let count = 0;
    for (const [key, item] of items) {
      const text = depth + 1 < walkDepth && walkable(item) ? undefined : whole(item, inner);
      // As JSON.stringify: what has no JSON form is left out of an object, and null in an array.
      if (text === undefined && !walkable(item) && !Array.isArray(v)) continue;
      emit(`${count++ ? ',' : Array.isArray(v) ? '[' : '{'}\n${inner}${key}`);
      if (text !== undefined) emit(text);
      else if (walkable(item)) walk(item, inner, depth + 1);
      else emit('null');
    }
    emit(count === 0 ? (Array.isArray(v) ? '[]' : '{}') : `\n${indent}${Array.isArray(v) ? ']' : '}'}`);
  };
  if (walkable(value) && walkDepth > 0) walk(value, '', 0);
  else {
    const text = whole(value, '');
    if (text === undefined) return;
    emit(text);
  }
  emit('\n');
  flush();
}

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
 * one string in memory. Plain objects and arrays are walked (after `toJSON`, called with its key as JSON.stringify
 * does); anything else, and whatever lies below `walkDepth`, is stringified whole. A value JSON.stringify refuses
 * (a BigInt, a cycle) throws the same error, after the pieces before it were written.
 */
export function writeJson(value: unknown, write: (text: string) => void, walkDepth = 2): void {
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
    return proto === Object.prototype || proto === null;
  };
  // What JSON.stringify serializes in place of a value: its toJSON(key), where it has one.
  const resolved = (v: unknown, key: string): unknown => {
    const toJSON = (typeof v === 'object' && v !== null) || typeof v === 'bigint' ? (v as { toJSON?: unknown }).toJSON : undefined;
    return typeof toJSON === 'function' ? toJSON.call(v, key) : v;
  };
  // The text of a value (its toJSON already called) that is not walked, indented at `indent`; undefined where it has
  // no JSON form (a function). What toJSON gave is not asked for its own toJSON (a Date from toJSON is an object).
  const whole = (v: unknown, indent: string): string | undefined => {
    const once = typeof (v as { toJSON?: unknown } | null)?.toJSON === 'function' && typeof v === 'object'
      ? (Array.isArray(v) ? Array.from(v) : Object.fromEntries(Object.entries(v!).filter(([, x]) => typeof x !== 'function')))
      : v;
    return JSON.stringify(once, null, 2)?.replaceAll('\n', `\n${indent}`);
  };
  // Emits a walkable value at `indent` (its first line is placed by the caller).
  const walk = (v: object, indent: string, depth: number) => {
    const inner = `${indent}  `;
    const isArray = Array.isArray(v);
    const items: [string, unknown][] = isArray ? Array.from(v, (item, i): [string, unknown] => ['', resolved(item, String(i))])
      : Object.entries(v).map(([key, item]) => [`${JSON.stringify(key)}: `, resolved(item, key)]);
    let count = 0;
    for (const [key, item] of items) {
      const nested = depth + 1 < walkDepth && walkable(item);
      const text = nested ? undefined : whole(item, inner);
      // As JSON.stringify: what has no JSON form is left out of an object, and null in an array.
      if (!nested && text === undefined && !isArray) continue;
      emit(`${count++ ? ',' : isArray ? '[' : '{'}\n${inner}${key}`);
      if (nested) walk(item, inner, depth + 1);
      else emit(text ?? 'null');
    }
    emit(count === 0 ? (isArray ? '[]' : '{}') : `\n${indent}${isArray ? ']' : '}'}`);
  };
  const top = resolved(value, '');
  if (walkable(top) && walkDepth > 0) walk(top, '', 0);
  else {
    const text = whole(top, '');
    if (text === undefined) return;
    emit(text);
  }
  emit('\n');
  flush();
}

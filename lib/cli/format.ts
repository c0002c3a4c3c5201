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

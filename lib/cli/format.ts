/** Human output helpers for the CLI: a progress bar and tables (sizes and durations: lib/format.ts). */
import { formatBytes, formatDuration } from '../format';

export function progressLine(options: { done: number; total: number; rate: number; eta?: number; label?: string; width?: number }): string {
  const width = options.width ?? 24;
  const fraction = options.total > 0 ? Math.min(1, options.done / options.total) : 1;
  const filled = Math.round(fraction * width);
  const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
  const eta = options.eta === undefined ? '' : ` ETA ${formatDuration(options.eta)}`;
  return `[${bar}] ${String(Math.floor(fraction * 100)).padStart(3)}% ${formatBytes(options.done)}/${formatBytes(options.total)} ${formatBytes(options.rate)}/s${eta}${options.label ? `  ${options.label}` : ''}`;
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length)));
  return rows.map((row) => row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]))).join('  ')).join('\n');
}

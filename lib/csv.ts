/**
 * RFC 4180 CSV: a header row, then one row per record; fields quoted where needed. A text cell that a spreadsheet
 * would run as a formula (it starts with = + - @, a tab or a carriage return: a VM or user name can) gets a leading
 * apostrophe, as OWASP advises; numbers stay numbers.
 */
export function toCsv<T extends Record<string, unknown>>(rows: T[], columns: (keyof T & string)[]): string {
  const field = (value: unknown) => {
    let text = Array.isArray(value) ? value.join(' ') : value === null || value === undefined ? '' : String(value);
    if (typeof value !== 'number' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [columns.join(','), ...rows.map((row) => columns.map((c) => field(row[c])).join(','))].join('\r\n') + '\r\n';
}

'use client';

/**
 * A time in the reader's own locale and time zone. The server renders the same element in its own zone,
 * so the text may differ on hydration: that one difference is expected and not an error.
 */
export function LocalTime({ iso, dateOnly = false }: { iso: string | Date; dateOnly?: boolean }) {
  const date = typeof iso === 'string' ? new Date(iso) : iso;
  return (
    <time dateTime={date.toISOString()} suppressHydrationWarning>
      {dateOnly ? date.toLocaleDateString() : date.toLocaleString()}
    </time>
  );
}

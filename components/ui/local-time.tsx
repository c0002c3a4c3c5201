'use client';

import { formatTime } from '@/lib/format';

/**
 * A time in the reader's own time zone, in the one format of every screen and message (lib/format.ts formatTime). The server renders the same element in its own zone,
 * so the text may differ on hydration: that one difference is expected and not an error.
 */
export function LocalTime({ iso, dateOnly = false }: { iso: string | Date; dateOnly?: boolean }) {
  const date = typeof iso === 'string' ? new Date(iso) : iso;
  return (
    <time dateTime={date.toISOString()} suppressHydrationWarning>
      {formatTime(date, { dateOnly })}
    </time>
  );
}

'use client';

import { useSyncExternalStore } from 'react';
import { formatTime } from '@/lib/format';

/** Never changes: what tells a render in the browser (true) from the server's and hydration's (false). */
const subscribe = () => () => {};

/**
 * A time in the one format of every screen and message (lib/format.ts formatTime). The server, and the browser while
 * it hydrates, write it in UTC (they agree, and React keeps server text it hydrates); then it is shown again in the
 * reader's own zone.
 */
export function LocalTime({ iso, dateOnly = false }: { iso: string | Date; dateOnly?: boolean }) {
  const date = typeof iso === 'string' ? new Date(iso) : iso;
  const inBrowser = useSyncExternalStore(subscribe, () => true, () => false);
  return (
    <time dateTime={date.toISOString()}>
      {formatTime(date, { dateOnly, ...(inBrowser ? {} : { timeZone: 'UTC' }) })}
    </time>
  );
}

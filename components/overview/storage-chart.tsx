import type { StoragePoint } from '@/lib/services/reports/storage-history';
import { formatBytes, formatTime } from '@/lib/format';

const WIDTH = 640;
const HEIGHT = 200;
const PAD = { left: 64, right: 12, top: 12, bottom: 24 };

/** Logical vs stored bytes over time, as two lines (SVG: a few hundred points need no chart library). */
export function StorageChart({ points }: { points: StoragePoint[] }) {
  if (points.length === 0) return <p className="text-slate-500">The chart starts with the first backup.</p>;
  const times = points.map((p) => Date.parse(p.at));
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const maxBytes = Math.max(...points.map((p) => p.logicalBytes), 1);
  const x = (t: number) => PAD.left + (t1 === t0 ? (WIDTH - PAD.left - PAD.right) / 2 : ((t - t0) / (t1 - t0)) * (WIDTH - PAD.left - PAD.right));
  const y = (bytes: number) => HEIGHT - PAD.bottom - (bytes / maxBytes) * (HEIGHT - PAD.top - PAD.bottom);
  const line = (pick: (p: StoragePoint) => number) => points.map((p, i) => `${i ? 'L' : 'M'}${x(times[i]).toFixed(1)},${y(pick(p)).toFixed(1)}`).join(' ');
  const last = points[points.length - 1];
  return (
    <figure>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} className="w-full max-w-3xl" role="img" aria-label={`Logical bytes ${formatBytes(last.logicalBytes)} against stored bytes ${formatBytes(last.storedBytes)}, over ${points.length} backup runs`}>
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(maxBytes * f)} y2={y(maxBytes * f)} stroke="#e2e8f0" />
            <text x={PAD.left - 6} y={y(maxBytes * f) + 4} textAnchor="end" fontSize="10" fill="#64748b">{formatBytes(maxBytes * f)}</text>
          </g>
        ))}
        {t1 === t0 ? (
          <text x={x(t0)} y={HEIGHT - 6} fontSize="10" fill="#64748b" textAnchor="middle">{formatTime(new Date(t0), { dateOnly: true, timeZone: 'UTC' })}</text>
        ) : (
          <>
            <text x={PAD.left} y={HEIGHT - 6} fontSize="10" fill="#64748b">{formatTime(new Date(t0), { dateOnly: true, timeZone: 'UTC' })}</text>
            <text x={WIDTH - PAD.right} y={HEIGHT - 6} fontSize="10" fill="#64748b" textAnchor="end">{formatTime(new Date(t1), { dateOnly: true, timeZone: 'UTC' })}</text>
          </>
        )}
        <path d={line((p) => p.logicalBytes)} fill="none" stroke="#2563eb" strokeWidth="2" />
        <path d={line((p) => p.storedBytes)} fill="none" stroke="#7c3aed" strokeWidth="2" />
        {points.length === 1 && <><circle cx={x(times[0])} cy={y(last.logicalBytes)} r="3" fill="#2563eb" /><circle cx={x(times[0])} cy={y(last.storedBytes)} r="3" fill="#7c3aed" /></>}
      </svg>
      <figcaption className="mt-1 text-xs text-slate-600"><span className="text-blue-600">━</span> logical bytes protected <span className="ml-3 text-violet-600">━</span> bytes stored
        {points.length === 1 && <span className="ml-3" data-testid="chart-one-run">one backup run so far: each run adds a point</span>}</figcaption>
    </figure>
  );
}

/** `qemu-img map --output=json`: how a disk file's guest address space lies in the file. */
import { execFile } from 'node:child_process';

const MAP_TIMEOUT_MS = 120_000;

/** One extent as qemu-img reports it: guest `[start, start+length)`; `offset`, where the data lies in the file at
 *  `depth` of the backing chain (0: this file), when it lies there uncompressed. */
export type MapExtent = { start: number; length: number; depth: number; data: boolean; zero: boolean; offset?: number; compressed?: boolean };

/** The map of `file` read as `format`. -U: the file may be open in a running VM (held still for its backup, or a
 *  backing file): only its metadata is read. Rejects on anything unexpected: a caller then reads everything. */
export function qemuImgMap(file: string, format: 'raw' | 'qcow2'): Promise<MapExtent[]> {
  return new Promise((resolve, reject) => {
    execFile('qemu-img', ['map', '-U', '--output=json', '-f', format, file], { timeout: MAP_TIMEOUT_MS, maxBuffer: 1024 * 1024 * 1024 }, (err, stdout) => {
      if (err) return reject(err);
      try {
        const parsed = JSON.parse(stdout) as unknown;
        if (!Array.isArray(parsed)) throw new Error('qemu-img map: not a list');
        resolve(parsed.map((e: Record<string, unknown>) => {
          const integer = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
          if (!integer(e.start) || !integer(e.length) || typeof e.data !== 'boolean' || (e.offset !== undefined && !integer(e.offset))) throw new Error('qemu-img map: bad extent');
          return {
            start: e.start as number, length: e.length as number, depth: integer(e.depth) ? (e.depth as number) : 0,
            data: e.data, zero: e.zero === true, offset: e.offset as number | undefined, compressed: e.compressed === true,
          };
        }));
      } catch (parseError) {
        reject(parseError);
      }
    });
  });
}

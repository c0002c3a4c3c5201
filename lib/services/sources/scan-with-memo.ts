import fs from 'node:fs/promises';
import { scanMemoFile } from '../../config';
import { ScanMemo } from '../../engine/sources/scan-memo';

/**
 * Runs a full scan of a source with what its last scan parsed (engine/sources/scan-memo.ts), then keeps what this
 * one parsed for the next.
 */
export async function scanWithMemo<T>(sourceId: string, scan: (memo: ScanMemo) => Promise<T>): Promise<T> {
  const file = scanMemoFile(sourceId);
  const memo = await ScanMemo.load(file);
  let result: T;
  try {
    result = await scan(memo);
  } catch (err) {
    // Whatever failed, the next scan starts without a memo: a cache must never fail every run after one.
    await fs.rm(file, { force: true }).catch(() => undefined);
    throw err;
  }
  // Only a cache: a save that fails (a full disk) costs the next scan its shortcut, nothing else.
  await memo.save(file).catch(() => undefined);
  return result;
}

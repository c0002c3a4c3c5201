/**
 * PostgreSQL advisory lock keys (one bigint per thing serialised; migrate.ts has its own). Transaction-level
 * locks only: they end with the transaction, so a killed process never leaves one behind.
 *
 * CATALOG_INDEX: every transaction that writes the catalog's index of the repository (recording a backup
 * image, recording a scan) takes it shared as its first statement; `catalog rebuild` takes it exclusive as
 * its first statement, before it lists the repository. Neither holds any other lock while it waits, so a
 * waiting rebuild cannot deadlock with a backup: it waits for the records in flight to commit, and records
 * that arrive later wait for the rebuild (PostgreSQL queues them behind the waiting exclusive request).
 */
export const CATALOG_INDEX_LOCK = 0x766d6469; // "vmdi"
/** Serialises deciding which repository the catalog indexes (first-run creation, adoption). */
export const REPOSITORY_IDENTITY_LOCK = 0x766d6472; // "vmdr"

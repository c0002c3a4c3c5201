import type { Catalog,CatalogSql } from '../../catalog/db';
import type { Repository } from '../../engine/repository/repository';
import type { TPlanRestore } from '../../validation/restores';
import { type PlanView } from './plan-view';
import { planRestoreRequest } from './plan-restore-request';

/**
 * Makes the plan of a browser restore. Planning reads every source and the repository, so the web server (which
 * may read neither) asks a worker (lib/jobs/worker-calls.ts); the worker and tests plan here (planRestoreRequest).
 */
export type RestorePlanner = (input: TPlanRestore) => Promise<PlanView>;

export function localRestorePlanner(db: Catalog, sql: CatalogSql, repo: Repository): RestorePlanner {
  return (input) => planRestoreRequest(db, sql, repo, input);
}

/** Which workers can run a job: the lane of its kind and target (lib/jobs/queue.ts), looked up in the catalog. */
import type { Catalog } from '../../catalog/db';
import { ALL_SOURCES_LANE, ANY_LANE, type Lane, sourceLane } from '../../jobs/queue';
import type { JobKind, JobTarget } from './job-view';

/** A source's name when all of `names` are one source's, else undefined. */
const single = (names: Iterable<string>): string | undefined => {
  const set = new Set(names);
  return set.size === 1 ? [...set][0] : undefined;
};

export async function jobLane(db: Catalog, kind: JobKind, target: JobTarget): Promise<Lane> {
  switch (kind) {
    // The repository alone (a verify's restore drills write to the worker's scratch space).
    case 'gc': case 'verify': case 'prune': case 'sync':
      return ANY_LANE;
    case 'scan':
      return target.source ? sourceLane(target.source) : ALL_SOURCES_LANE;
    case 'restore': {
      // A restore writes where the VM's disks are (in place) or into a folder of the host that serves its source.
      const request = target.requestId ? await db.restoreRequest.findUnique({ where: { id: target.requestId }, select: { source: true } }) : null;
      return request ? sourceLane(request.source) : ANY_LANE;
    }
    case 'backup': {
      if (target.scheduledJob) {
        // A job without a source scans every source (also its retries of a few VMs): it needs them all.
        const job = await db.scheduledJob.findUnique({ where: { name: target.scheduledJob }, select: { source: true } });
        return job?.source ? sourceLane(job.source) : ALL_SOURCES_LANE;
      }
      if (target.source) return sourceLane(target.source);
      if (target.vm) {
        // A VM named without its source: one source's VM runs there (and the run reads that source only, run-job.ts);
        // a name in several sources needs them all.
        const vms = await db.vm.findMany({ where: { name: target.vm }, select: { source: { select: { name: true } } } });
        const source = single(vms.map((vm) => vm.source.name));
        return source ? sourceLane(source) : ALL_SOURCES_LANE;
      }
      return ALL_SOURCES_LANE;
    }
  }
}

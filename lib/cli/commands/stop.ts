/** `vmdedup stop`: stops what `npm start` runs on this VMDEDUP_HOME (web server, worker), then the embedded catalog. */
import { stopEmbeddedCatalog } from '../../catalog/embedded-postgres';
import { vmdedupHome } from '../../config';
import { processAlive } from '../../engine/process-alive';
import { runningStartPids } from '../../home';
import { type Command, EXIT_FAILURE, EXIT_OK, parse } from '../command';

/** How long the running vmdedup gets to stop (a job running in its worker is marked failed, its work kept). */
const STOP_WAIT_MS = 30_000;

export const stopCommand: Command = {
  name: 'stop',
  help: '  stop                                                    stop what `npm start` runs on this VMDEDUP_HOME, and its embedded catalog',
  flags: {},
  async run(args, { out }) {
    parse(args, {});
    const home = vmdedupHome();
    // Each start's pid file names its pid and start time: a pid handed to another program since is not ours to stop.
    const pids = runningStartPids(home);
    if (pids.length === 0) {
      // The catalog is left alone: something else may use it (a worker, an npm start this one cannot vouch for).
      out(`vmdedup is not running on ${home} (no 'npm start' of this home); 'npx vmdedup db stop' stops the embedded catalog`);
      return EXIT_OK;
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch (err) {
        out(`cannot stop vmdedup (pid ${pid}): ${(err as NodeJS.ErrnoException).code === 'EPERM' ? 'it runs as another user (run this as that user or root)' : (err as Error).message}`);
        return EXIT_FAILURE;
      }
    }
    const end = Date.now() + STOP_WAIT_MS;
    while (pids.some(processAlive) && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 200));
    const left = pids.filter(processAlive);
    if (left.length) {
      out(`vmdedup (pid ${left.join(', ')}) did not stop within ${STOP_WAIT_MS / 1000} s; the embedded catalog is left running`);
      return EXIT_FAILURE;
    }
    out(`stopped vmdedup (pid ${pids.join(', ')}): web server${pids.length > 1 ? 's' : ''} and job worker`);
    if (!process.env.DATABASE_URL) out((await stopEmbeddedCatalog(home)) ? 'embedded catalog stopped' : 'embedded catalog is not running');
    return EXIT_OK;
  },
};

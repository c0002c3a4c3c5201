/** `vmdedup stop`: stops what `npm start` runs on this VMDEDUP_HOME (web server, worker), then the embedded catalog. */
import fs from 'node:fs/promises';
import { stopEmbeddedCatalog } from '../../catalog/embedded-postgres';
import { vmdedupHome } from '../../config';
import { processAlive } from '../../engine/process-alive';
import { startPidFile } from '../../home';
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
    const pid = await runningStart(home);
    if (pid === undefined) {
      out(`vmdedup is not running on ${home} (no 'npm start' of this home)`);
    } else {
      process.kill(pid, 'SIGTERM');
      const end = Date.now() + STOP_WAIT_MS;
      while (processAlive(pid) && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 200));
      if (processAlive(pid)) {
        out(`vmdedup (pid ${pid}) did not stop within ${STOP_WAIT_MS / 1000} s; the embedded catalog is left running`);
        return EXIT_FAILURE;
      }
      out(`stopped vmdedup (pid ${pid}): web server and job worker`);
    }
    if (!process.env.DATABASE_URL) out((await stopEmbeddedCatalog(home)) ? 'embedded catalog stopped' : 'embedded catalog is not running');
    return EXIT_OK;
  },
};

/** The pid of the `npm start` of this home that still runs (its pid file, checked against the process's command line). */
async function runningStart(home: string): Promise<number | undefined> {
  const recorded = await fs.readFile(startPidFile(home), 'utf8').catch(() => '');
  const pid = Number.parseInt(recorded.trim(), 10);
  if (!processAlive(pid)) return undefined;
  // A pid the system gave to another program since is not ours to stop.
  const command = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return command.includes('start') ? pid : undefined;
}

/** Whether a process of this host with that pid runs (EPERM: it does, as another user). Tells a dead writer's
 *  leftovers (temp files, markers) from those of one still at work. */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export type BackupProgress = {
  bytesDone: number;
  bytesTotal: number;
  /** VMs finished (saved or failed) of those the run backs up, and their rate: a pool of small VMs moves by these. */
  vmsDone: number;
  vmsTotal: number;
  vmsPerSecond: number;
  vm?: string;
  disk?: string;
  bytesPerSecond: number;
  etaSeconds?: number;
};

/** Counts bytes and VMs and reports at most every `intervalMs`, plus once at the end. */
export class ProgressTracker {
  private bytesDone = 0;
  private vmsDone = 0;
  private lastReport = 0;
  private readonly started = Date.now();
  vm?: string;
  disk?: string;

  constructor(
    private readonly bytesTotal: number,
    private readonly vmsTotal: number,
    private readonly onProgress?: (progress: BackupProgress) => void,
    private readonly intervalMs = 200,
  ) {}

  add(bytes: number): void {
    this.bytesDone += bytes;
    if (Date.now() - this.lastReport >= this.intervalMs) this.report();
  }

  /** The VMs finished so far (saved or not). */
  setVmsDone(count: number): void {
    this.vmsDone = count;
    if (Date.now() - this.lastReport >= this.intervalMs) this.report();
  }

  report(): void {
    if (!this.onProgress) return;
    this.lastReport = Date.now();
    const seconds = (this.lastReport - this.started) / 1000;
    const bytesPerSecond = seconds > 0 ? this.bytesDone / seconds : 0;
    const vmsPerSecond = seconds > 0 ? this.vmsDone / seconds : 0;
    // With bytes to read, they decide the time left; a run that reads (almost) nothing moves by VMs.
    const remaining = Math.max(0, this.bytesTotal - this.bytesDone);
    const vmsLeft = Math.max(0, this.vmsTotal - this.vmsDone);
    const etaSeconds = remaining > 0 ? (bytesPerSecond > 0 ? remaining / bytesPerSecond : undefined) : vmsPerSecond > 0 ? vmsLeft / vmsPerSecond : undefined;
    this.onProgress({
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      vmsDone: this.vmsDone,
      vmsTotal: this.vmsTotal,
      vmsPerSecond,
      vm: this.vm,
      disk: this.disk,
      bytesPerSecond,
      etaSeconds,
    });
  }
}

export type BackupProgress = {
  bytesDone: number;
  bytesTotal: number;
  vm?: string;
  disk?: string;
  bytesPerSecond: number;
  etaSeconds?: number;
};

/** Counts bytes and reports at most every `intervalMs`, plus once at the end. */
export class ProgressTracker {
  private bytesDone = 0;
  private lastReport = 0;
  private readonly started = Date.now();
  vm?: string;
  disk?: string;

  constructor(
    private readonly bytesTotal: number,
    private readonly onProgress?: (progress: BackupProgress) => void,
    private readonly intervalMs = 200,
  ) {}

  add(bytes: number): void {
    this.bytesDone += bytes;
    if (Date.now() - this.lastReport >= this.intervalMs) this.report();
  }

  report(): void {
    if (!this.onProgress) return;
    this.lastReport = Date.now();
    const seconds = (this.lastReport - this.started) / 1000;
    const bytesPerSecond = seconds > 0 ? this.bytesDone / seconds : 0;
    const remaining = Math.max(0, this.bytesTotal - this.bytesDone);
    this.onProgress({
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      vm: this.vm,
      disk: this.disk,
      bytesPerSecond,
      etaSeconds: bytesPerSecond > 0 ? remaining / bytesPerSecond : undefined,
    });
  }
}

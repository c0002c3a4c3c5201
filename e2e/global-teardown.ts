import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** Stops the embedded catalog that e2e/serve.sh started, and removes its home. */
export default function globalTeardown(): void {
  const marker = 'test-results/e2e-home';
  if (!fs.existsSync(marker)) return;
  const home = fs.readFileSync(marker, 'utf8').trim();
  execFileSync(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, VMDEDUP_HOME: home, DATABASE_URL: '' }, stdio: 'pipe' });
  fs.rmSync(home, { recursive: true, force: true });
  fs.rmSync(marker);
}

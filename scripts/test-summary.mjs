// Sums the JSON reports of vitest and Playwright in a folder into one line: "tests: N passed, N failed".
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2] ?? 'test-results';
let passed = 0;
let failed = 0;
for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.json'))) {
  const report = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
  if (typeof report.numPassedTests === 'number') {
    passed += report.numPassedTests; // vitest
    failed += report.numFailedTests;
  } else if (report.stats) {
    passed += report.stats.expected + report.stats.flaky; // Playwright
    failed += report.stats.unexpected;
  }
}
console.log(`tests: ${passed} passed, ${failed} failed`);
if (passed === 0) {
  console.error('no test ran');
  process.exitCode = 1;
}

// Sums the JSON reports of vitest and Playwright in a folder into one line: "tests: N passed, N failed", after
// one line per failure (the file, the test, the first line of its error) so that a CI log's tail says what broke.
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2] ?? 'test-results';
const root = process.cwd();
let passed = 0;
let failed = 0;
const failures = [];

const firstLine = (text) => (text ?? '').replace(/\x1b\[[0-9;]*m/g, '').split('\n').map((l) => l.trim()).find(Boolean) ?? '(no message)';
const relative = (file) => path.relative(root, file ?? '') || String(file);

function vitest(report) {
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  for (const file of report.testResults ?? []) {
    const failedTests = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
    for (const t of failedTests) failures.push(`${relative(file.name)} › ${t.fullName}: ${firstLine(t.failureMessages?.[0])}`);
    // A file that failed outside any test (its import or a beforeAll): nothing else counts it.
    if (file.status === 'failed' && failedTests.length === 0) {
      failed += 1;
      failures.push(`${relative(file.name)}: ${firstLine(file.message)}`);
    }
  }
}

function playwright(report) {
  passed += report.stats.expected + report.stats.flaky;
  failed += report.stats.unexpected;
  const walk = (suite) => {
    for (const spec of suite.specs ?? []) {
      for (const test of spec.tests ?? []) {
        if (test.status !== 'unexpected') continue;
        const error = test.results?.at(-1)?.error?.message;
        failures.push(`${spec.file} › ${spec.title}: ${firstLine(error)}`);
      }
    }
    for (const child of suite.suites ?? []) walk(child);
  };
  for (const suite of report.suites ?? []) walk(suite);
  for (const error of report.errors ?? []) failures.push(`playwright: ${firstLine(error.message)}`);
}

for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.json'))) {
  const report = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
  if (typeof report.numPassedTests === 'number') vitest(report);
  else if (report.stats) playwright(report);
}
for (const line of failures.slice(0, 30)) console.log(`failed: ${line.slice(0, 300)}`);
if (failures.length > 30) console.log(`failed: … and ${failures.length - 30} more`);
console.log(`tests: ${passed} passed, ${failed} failed`);
if (passed === 0) {
  console.error('no test ran');
  process.exitCode = 1;
}

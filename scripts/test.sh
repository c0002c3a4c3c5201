#!/usr/bin/env bash
# `npm test`: every test. Installs qemu-utils and chromium with apt when run as root and they are missing.
# Ends with one line "tests: N passed, N failed" over all suites.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-tools.sh qemu-img qemu-io chromium || exit 1
[[ -d node_modules ]] || npm ci || exit 1
mkdir -p test-results
rm -f test-results/*.json
status=0

# The libvirt tests need a real libvirtd and a tiny QEMU guest (installed and started here when run as root; the
# guest's kernel is cached in /var/tmp). VMDEDUP_SKIP_LIBVIRT=1 runs everything else.
if [[ -z ${VMDEDUP_SKIP_LIBVIRT:-} ]]; then
  guest=/var/tmp/vmdedup-test-guest
  if bash scripts/libvirt-host.sh setup "$guest"; then export VMDEDUP_TEST_LIBVIRT=$guest
  else echo "failed: the libvirt host for the tests could not be set up (above); VMDEDUP_SKIP_LIBVIRT=1 skips its tests"; status=1; fi
fi

echo "== typecheck and lint"
npx tsc --noEmit -p . || status=1
npx eslint . || status=1

echo "== unit and integration tests (catalog: ${VMDEDUP_TEST_DATABASE_URL:+external PostgreSQL}${VMDEDUP_TEST_DATABASE_URL:-embedded PostgreSQL})"
npx vitest run --reporter=default --reporter=json --outputFile.json=test-results/vitest.json || status=1

if [[ -n ${VMDEDUP_TEST_EXTERNAL_DATABASE_URL:-} ]]; then
  echo "== catalog and CLI tests again on the external PostgreSQL"
  VMDEDUP_TEST_DATABASE_URL=$VMDEDUP_TEST_EXTERNAL_DATABASE_URL npx vitest run lib/catalog lib/services test/backup-cli.test.ts \
    --reporter=default --reporter=json --outputFile.json=test-results/vitest-external.json || status=1
fi

echo "== end-to-end tests in Chromium"
PLAYWRIGHT_JSON_OUTPUT_NAME=test-results/playwright.json npx playwright test --reporter=list,json || status=1

node scripts/test-summary.mjs test-results || status=1
exit $status

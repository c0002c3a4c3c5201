#!/usr/bin/env bash
# `npm test`: every test. Installs qemu-utils and chromium with apt when run as root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-tools.sh qemu-img qemu-io chromium
[[ -d node_modules ]] || npm ci

echo "== unit and integration tests (catalog: ${VMDEDUP_TEST_DATABASE_URL:+external PostgreSQL}${VMDEDUP_TEST_DATABASE_URL:-embedded PostgreSQL})"
npx vitest run

if [[ -n ${VMDEDUP_TEST_EXTERNAL_DATABASE_URL:-} ]]; then
  echo "== catalog tests again on the external PostgreSQL"
  VMDEDUP_TEST_DATABASE_URL=$VMDEDUP_TEST_EXTERNAL_DATABASE_URL npx vitest run lib/catalog test/backup-cli.test.ts
fi

echo "== end-to-end tests in Chromium"
npx playwright test

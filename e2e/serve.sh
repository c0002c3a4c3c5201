#!/usr/bin/env bash
# The e2e server: a fresh VMDEDUP_HOME with a fleet backed up through the CLI, served by `npm start`.
set -euo pipefail
port=$1
home=${E2E_HOME:-$(mktemp -d /tmp/vmdedup-e2e-XXXXXX)}
chmod 755 "$home"  # a home open to others, as older vmdedup made it: the first command tightens it (e2e/privileges.spec.ts)
mkdir -p "$(dirname "$0")/../test-results"
echo "$home" > "$(dirname "$0")/../test-results/e2e-home"  # read by the spec and by global-teardown.ts
# The admin's password is known to the specs (e2e/fixtures.ts); other users are added by the specs through the CLI.
export VMDEDUP_HOME=$home VMDEDUP_DEMO=0 PORT=$port VMDEDUP_ADMIN_PASSWORD=e2e-admin-password VMDEDUP_SCHEDULER_TICK_MS=2000
unset DATABASE_URL
node --import tsx -e "import('./lib/demo/fleet.ts').then(m => m.buildFleet({ dir: process.env.VMDEDUP_HOME + '/fleet' }))"
node bin/vmdedup.mjs source add kvm --type libvirt --path "$home/fleet/libvirt"
node bin/vmdedup.mjs source add esx --type vmware --path "$home/fleet/vmware"
node bin/vmdedup.mjs backup >/dev/null
node bin/start.mjs

/**
 * The graph with a 2,000-VM fleet (catalog rows made here: 20 linked-clone bases, 10 shared configuration
 * disks, a clone and a data disk per VM): it groups the VMs, stays responsive, and still finds one VM.
 * The time to a drawn graph is printed for the notes (figures live in `npm run bench:graph`, not in asserts).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { ADMIN, e2eHome, expect, signIn, test, vmdedup } from './fixtures';

const VMS = 2000;

async function addSyntheticFleet(source: string): Promise<void> {
  const url = vmdedup(['db', 'url']).trim();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const sourceId = randomUUID();
    await client.query('INSERT INTO "Source" ("id", "name", "type", "path") VALUES ($1, $2, $3, $4)', [sourceId, source, 'libvirt', `${e2eHome()}/${source}`]);
    const disks: [string, string, boolean, string | null][] = [];
    const vms: [string, string][] = [];
    const links: [string, string, string][] = [];
    for (let b = 0; b < 20; b++) disks.push([`${source}-base${b}`, `/${source}/base-${b}.qcow2`, true, null]);
    for (let c = 0; c < 10; c++) disks.push([`${source}-config${c}`, `/${source}/config-${c}.raw`, true, null]);
    for (let v = 0; v < VMS; v++) {
      const vm = `${source}-vm${v}`;
      vms.push([vm, `node${String(v).padStart(4, '0')}`]);
      disks.push([`${vm}-root`, `/${source}/node${v}.qcow2`, false, `/${source}/base-${v % 20}.qcow2`], [`${vm}-data`, `/${source}/node${v}-data.raw`, false, null]);
      links.push([vm, `${vm}-root`, 'attached'], [vm, `${vm}-data`, 'attached'], [vm, `${source}-config${v % 10}`, 'attached'], [vm, `${source}-base${v % 20}`, 'parent']);
    }
    await client.query(
      `INSERT INTO "Disk" ("id", "sourceId", "identifier", "path", "format", "common", "parentPath", "sizeBytes")
       SELECT d.id, $1, d.path, d.path, 'qcow2', d.common, d.parent, 1073741824 FROM unnest($2::text[], $3::text[], $4::boolean[], $5::text[]) AS d(id, path, common, parent)`,
      [sourceId, disks.map((d) => d[0]), disks.map((d) => d[1]), disks.map((d) => d[2]), disks.map((d) => d[3])],
    );
    await client.query(`INSERT INTO "Vm" ("id", "sourceId", "name", "configPath") SELECT v.id, $1, v.name, '' FROM unnest($2::text[], $3::text[]) AS v(id, name)`,
      [sourceId, vms.map((v) => v[0]), vms.map((v) => v[1])]);
    await client.query(`INSERT INTO "VmDisk" ("vmId", "diskId", "via") SELECT * FROM unnest($1::text[], $2::text[], $3::text[])`,
      [links.map((l) => l[0]), links.map((l) => l[1]), links.map((l) => l[2])]);
  } finally {
    await client.end();
  }
}

test('a 2,000-VM fleet: VMs grouped by the disks they share, one VM found by search', async ({ page }, testInfo) => {
  const source = `big${Date.now() % 100000}`;
  await addSyntheticFleet(source);
  await signIn(page, ADMIN);
  const started = Date.now();
  await page.goto('/graph');
  await page.getByLabel('Source').selectOption(source);
  await expect(page.getByTestId('graph-summary')).toContainText(`${VMS} VMs`);
  await expect(page.getByTestId('graph-summary')).toContainText('grouped');
  const drawnAfter = Date.now() - started;
  const summary = await page.getByTestId('graph-summary').textContent();
  testInfo.annotations.push({ type: 'graph', description: `${summary}; page to drawn graph ${drawnAfter} ms` });
  console.log(`graph with ${VMS} VMs: ${summary}; page load to drawn graph ${drawnAfter} ms`);
  await expect(page.getByRole('list', { name: 'Common disks in view' }).getByRole('button')).toHaveCount(30);

  // Pan and zoom stay live, and a click on the canvas selects what is under it.
  const canvas = page.getByTestId('graph-canvas');
  await canvas.hover();
  await page.mouse.wheel(0, -400);
  await page.getByRole('list', { name: 'Common disks in view' }).getByRole('button', { name: 'config-3.raw' }).click();
  await expect(page.getByRole('region', { name: 'Selected node' })).toContainText('config-3.raw');

  // A searched VM leaves its group and stands on its own, marked.
  await page.getByLabel('Search the graph').fill('node1234');
  await expect(page.getByTestId('graph-summary')).toContainText('51 nodes');
  await page.screenshot({ path: testInfo.outputPath('graph-2000.png') });
});

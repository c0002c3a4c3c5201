import path from 'node:path';
import { selectSources } from '../../services/sources/select-sources';
import { getCatalogSql } from '../../catalog/db';
import { InputError } from '../../engine/errors';
import { scanSource } from '../../engine/sources/inventory';
import { formatBytes } from '../../format';
import { type Command, type Flags, EXIT_BAD_INPUT, EXIT_OK, oneLine, parse } from '../command';

const flags: Flags = { source: { type: 'string' }, json: { type: 'boolean' } };

export const inventoryCommand: Command = {
  name: 'inventory',
  help: '  inventory [--source <name>] [--json]                    VMs, disks, pointers, parent chains, shared disks (live)',
  flags,
  async run(args, { io, signal, out, json }) {
    const { values } = parse(args, flags);
    const sources = await selectSources(await getCatalogSql(), values.source as string | undefined);
    const inventories = [];
    // A source that cannot be read is one line (exit 2); the others are still shown.
    const unreadable: { source: string; error: string }[] = [];
    for (const source of sources) {
      try {
        inventories.push(await scanSource(source, { signal }));
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        unreadable.push({ source: source.name, error: err.message });
      }
    }
    for (const problem of unreadable) io.stderr.write(`vmdedup: source '${problem.source}': ${oneLine(problem.error)}\n`);
    const inventoryExit = unreadable.length ? EXIT_BAD_INPUT : EXIT_OK;
    const report = inventories.map((inv) => ({
      source: inv.source.name, type: inv.source.type, path: inv.configRoot, storage: inv.areas.slice(1), root: inv.root, warnings: inv.warnings, problems: inv.problems.map((p) => p.message),
      vms: inv.vms.map((vm) => ({
        name: vm.name, uuid: vm.uuid, configPath: vm.configPath, error: vm.error, ...(vm.domain ? { state: vm.domain.state, persistent: vm.domain.persistent } : {}),
        slots: vm.slots.map((s) => ({ slot: s.slot, device: s.device, target: s.target, format: s.format, shareable: s.shareable, readonly: s.readonly, serial: s.serial, wwn: s.wwn, mode: s.mode, sharing: s.sharing, backedUp: s.backedUp, note: s.note })),
        disks: vm.disks.map((use) => {
          const disk = inv.disks.get(use.diskPath)!;
          const usedBy = inv.usedBy.get(use.diskPath) ?? [];
          return {
            path: disk.path, identifier: disk.identifier, format: disk.format, via: use.via, slot: use.slot, target: use.target,
            parent: disk.parent ? { pointer: disk.parent.pointer, path: disk.parent.path } : undefined,
            versionToken: disk.versionToken, logicalBytes: disk.logicalBytes, virtualSize: disk.virtualSize,
            vmdk: disk.vmdk, usedBy, common: usedBy.length > 1,
          };
        }),
      })),
    }));
    if (values.json) {
      json({ sources: report, ...(unreadable.length ? { unreadable } : {}) });
      return inventoryExit;
    }
    for (const source of report) {
      out(`source ${source.source} (${source.type}, ${source.path}${source.storage.length ? `; disks also in ${source.storage.join(', ')}` : ''})`);
      for (const warning of source.warnings) out(`  warning: ${warning}`);
      for (const problem of source.problems) out(`  problem: ${problem}`);
      for (const vm of source.vms) {
        out(`  vm ${vm.name}${vm.state ? ` (${vm.state}${vm.persistent ? '' : ', transient'})` : ''}${vm.error ? `  ERROR: ${vm.error}` : ''}`);
        for (const disk of vm.disks) {
          const shared = disk.common ? `  common: ${disk.usedBy.join(', ')}` : '';
          out(`    ${disk.via === 'attached' ? (disk.slot ?? '') : '  parent'} ${path.relative(source.root, disk.path)} [${disk.format}, ${formatBytes(disk.logicalBytes)}]${disk.parent ? ` -> ${disk.parent.pointer}` : ''}${shared}`);
        }
        for (const slot of vm.slots.filter((s) => !s.backedUp)) out(`    ${slot.slot} ${slot.target ?? ''} (${slot.note})`);
      }
    }
    return inventoryExit;
  },
};

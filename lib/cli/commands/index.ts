/** The table of `vmdedup` commands, in the order `vmdedup help` lists them; a new command joins it here. */
import type { Command } from '../command';
import { alertCommand } from './alert';
import { auditCommand } from './audit';
import { backupCommand } from './backup';
import { backupsCommand } from './backups';
import { catalogCommand } from './catalog';
import { commonDisksCommand } from './common-disks';
import { dbCommand } from './db';
import { inventoryCommand } from './inventory';
import { jobCommand } from './job';
import { keyCommand } from './key';
import { drillCommand, gcCommand, pruneCommand, verifyCommand } from './maintenance';
import { repositoryCommand } from './repository';
import { restoreCommand, restorePlanCommand } from './restore';
import { sourceCommand } from './source';
import { statsCommand } from './stats';
import { stopCommand } from './stop';
import { syncCommand } from './sync';
import { userCommand } from './user';
import { workersCommand } from './workers';

export const commands: readonly Command[] = [
  sourceCommand, inventoryCommand, backupCommand, backupsCommand, jobCommand, workersCommand, commonDisksCommand, statsCommand,
  restorePlanCommand, restoreCommand, pruneCommand, gcCommand, verifyCommand, drillCommand, syncCommand, alertCommand, catalogCommand, repositoryCommand, keyCommand, userCommand, auditCommand, dbCommand, stopCommand,
];

export function findCommand(name: string | undefined): Command | undefined {
  return commands.find((command) => command.name === name);
}

export const USAGE = `usage: vmdedup <command> [options]

${commands.map((command) => command.help).join('\n')}

Data lives under VMDEDUP_HOME (default ./data); DATABASE_URL selects an external PostgreSQL (its role owns the
catalog; work runs as the app role, see README "Catalog database roles"). The repository
(VMDEDUP_REPOSITORY: a folder, default $VMDEDUP_HOME/repository, or s3://bucket/prefix with the standard AWS_*
settings) is created by the first backup of a new catalog, else only
by 'repository init': a missing one (an unmounted disk) or another one than the catalog's is an error (exit 1).
Backups, scans, stats and restores first record any backup image the repository holds and the catalog lacks.`;

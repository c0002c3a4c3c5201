import { describeAuditChain, verifyAuditChain } from '../../services/audit/verify-audit-chain';
import { getCatalogSql } from '../../catalog/db';
import { type Command, type Subcommand, EXIT_FAILURE, EXIT_OK, runSubcommand } from '../command';

const subcommands: Record<string, Subcommand> = {
  verify: {
    flags: { json: { type: 'boolean' } },
    async run({ values }, { io, out, json }) {
      const report = await verifyAuditChain(await getCatalogSql());
      if (values.json) json(report);
      else if (report.intact) out(describeAuditChain(report));
      else io.stderr.write(`vmdedup: ${describeAuditChain(report)}\n`);
      return report.intact ? EXIT_OK : EXIT_FAILURE;
    },
  },
};

export const auditCommand: Command = {
  name: 'audit',
  help: `  audit verify [--json]                                   check the audit log's hash chain (exit 1: it names the first
                                                          event rewritten, deleted, inserted or moved)`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'audit' subcommand '${sub}': use 'audit verify'`),
};

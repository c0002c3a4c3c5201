/** `vmdedup alert add|list|remove|test`: where alerts go (webhooks, e-mail). */
import { getCatalog } from '../../catalog/db';
import { addAlertChannel, listAlertChannels, removeAlertChannel, sendAlert } from '../../services/alerts/alerts';
import { type Command, type Subcommand, EXIT_FAILURE, EXIT_OK, runSubcommand } from '../command';
import { table } from '../format';

const subcommands: Record<string, Subcommand> = {
  add: {
    flags: {}, positionals: 2,
    async run({ positionals: [kind, target] }, { out }) {
      const { id } = await addAlertChannel(await getCatalog(), kind, target);
      out(`alerts go to ${kind} ${target} (${id}); try it with 'vmdedup alert test'`);
      return EXIT_OK;
    },
  },
  list: {
    flags: { json: { type: 'boolean' } },
    async run({ values }, { out, json }) {
      const channels = await listAlertChannels(await getCatalog());
      if (values.json) json({ channels });
      else out(channels.length ? table([['ID', 'KIND', 'TARGET'], ...channels.map((c) => [c.id, c.kind, c.target])]) : 'no alert channels (add one with: vmdedup alert add webhook <url> | email <address>)');
      return EXIT_OK;
    },
  },
  remove: {
    flags: {}, positionals: 1,
    async run({ positionals: [id] }, { out }) {
      await removeAlertChannel(await getCatalog(), id);
      out(`removed alert channel ${id}`);
      return EXIT_OK;
    },
  },
  test: {
    flags: { json: { type: 'boolean' } },
    async run({ values }, { out, json }) {
      const deliveries = await sendAlert(await getCatalog(), { event: 'test', severity: 'info', subject: 'test alert', message: 'This is a test alert from vmdedup: alerts reach you here.' });
      if (values.json) json({ deliveries });
      else out(deliveries.length ? deliveries.map((d) => `${d.ok ? 'sent' : 'FAILED'}  ${d.channel}${d.error ? `: ${d.error}` : ''}`).join('\n') : 'no alert channels to test');
      return deliveries.some((d) => !d.ok) ? EXIT_FAILURE : EXIT_OK;
    },
  },
};

export const alertCommand: Command = {
  name: 'alert',
  help: `  alert add webhook <url> | alert add email <address>    send alerts there (failed, partial or missed runs, damage
                                                          found by verify, gc left pending, a VM past its RPO); e-mail
                                                          goes through VMDEDUP_SMTP_URL (smtp://user:pw@host:port)
  alert list [--json] | alert remove <id> | alert test     the channels; a test alert to each (exit 1 if one fails)`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'alert' subcommand '${sub}': use add, list, remove or test`),
};

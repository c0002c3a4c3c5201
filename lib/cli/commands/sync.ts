import { formatBytes } from '../../format';
import { syncToRepository } from '../../services/maintenance/sync-repository';
import { type Command, EXIT_FAILURE, EXIT_OK, badInput, parse } from '../command';
import { recoveryKeyText } from './repository';

const flags = { to: { type: 'string' }, encrypt: { type: 'boolean' }, check: { type: 'boolean' }, json: { type: 'boolean' } } as const;

export const syncCommand: Command = {
  name: 'sync',
  help: `  sync --to <folder|s3://bucket/prefix> [--encrypt] [--check] [--json]
                                                          copy the backups the copy lacks into another repository (an
                                                          off-site copy; created when empty, encrypted when the source is
                                                          or with --encrypt, its passphrase in VMDEDUP_SYNC_PASSWORD_FILE,
                                                          else VMDEDUP_PASSWORD_FILE's), only the blocks it lacks, each
                                                          checked as it is read; --check: also find the blocks earlier
                                                          copies lack in the copy and copy them again; exit 1 when a
                                                          backup could not be copied (or, with --check, repaired)`,
  flags,
  async run(args, { out, json, signal, io }) {
    const { values } = parse(args, flags);
    if (typeof values.to !== 'string' || !values.to) throw badInput("sync needs --to <folder or s3://bucket/prefix>: where the copy is");
    const showProgress = !values.json && io.stderr.isTTY;
    const { report, target } = await syncToRepository({
      to: values.to, encrypt: Boolean(values.encrypt), check: Boolean(values.check), signal,
      onProgress: showProgress ? (p) => io.stderr.write(`\rsyncing: ${p.imagesDone}/${p.imagesTotal} backups, ${p.chunksCopied} blocks (${formatBytes(p.bytesCopied)}) copied\x1b[K`) : undefined,
    });
    if (showProgress) io.stderr.write('\n');
    if (values.json) {
      json({ target: { location: target.location, id: target.id, encrypted: target.encrypted, created: target.created }, ...report });
    } else {
      if (target.created) out(`created ${target.encrypted ? 'encrypted ' : ''}repository ${target.id} at ${target.location} for the copy`);
      const { images, storedDisks, chunks } = report;
      out(`copied ${images.copied} backups to ${target.location} (${images.alreadyCopied} were there${images.failed.length ? `, ${images.failed.length} could not be copied` : ''}): `
        + `${storedDisks.copied} stored disks and ${chunks.copied} blocks (${formatBytes(chunks.bytes)}) written, ${chunks.reused} blocks and ${storedDisks.reused} stored disks already there`);
      for (const failed of images.failed) out(`not copied: ${failed.id}${failed.vm ? ` (${failed.vm})` : ''}: ${failed.error}`);
      const { checked } = report;
      if (checked) {
        out(`checked ${checked.images} earlier copies (${checked.storedDisks} stored disks): ${checked.blocksMissing} blocks were missing from the copy, ${checked.blocksRepaired} copied again`);
        for (const problem of checked.unrepairable) out(`not repaired: ${problem.id}: ${problem.error}`);
      }
    }
    if (target.recoveryKey) (values.json ? io.stderr.write.bind(io.stderr) : (text: string) => out(text))(`${recoveryKeyText(target.recoveryKey)}\n`);
    return report.images.failed.length || report.checked?.unrepairable.length ? EXIT_FAILURE : EXIT_OK;
  },
};

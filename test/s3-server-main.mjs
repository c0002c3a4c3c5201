// The S3-compatible test server as a process of its own (test/s3-server.ts starts it): prints its port, then serves
// until killed. Run with --openssl-legacy-provider: s3rver seals listing continuation tokens with DES.
import S3rver from 's3rver';

const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: process.argv[2] });
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));

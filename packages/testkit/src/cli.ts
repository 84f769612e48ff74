import { parseArgs } from 'node:util';
import type { ClusterProvider } from './cluster.js';
import { isTestkitError } from './errors.js';
import { startCluster } from './start-cluster.js';

const USAGE = `Usage: lagless-cluster up [options]

Starts a PostgreSQL primary with streaming replicas on loopback, prints their URLs
as environment lines, and runs until Ctrl-C; then removes every process and file.

Options:
  --replicas N      streaming replicas (default 2)
  --database NAME   database to create (default app)
  --provider P      auto | system | embedded | docker (default auto)
  -h, --help        this text
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      replicas: { type: 'string' },
      database: { type: 'string' },
      provider: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals[0] !== 'up') {
    (values.help ? process.stdout : process.stderr).write(USAGE);
    return values.help ? 0 : 2;
  }
  const started = Date.now();
  const cluster = await startCluster({
    ...(values.replicas !== undefined ? { replicas: Number(values.replicas) } : {}),
    ...(values.database !== undefined ? { database: values.database } : {}),
    ...(values.provider !== undefined ? { provider: values.provider as ClusterProvider } : {}),
  });
  process.stdout.write(
    [
      `# PostgreSQL ${cluster.serverVersion} (${cluster.provider}), ${cluster.replicas.length} replica(s), started in ${Date.now() - started} ms`,
      `LAGLESS_PRIMARY_URL=${cluster.primary.url}`,
      `LAGLESS_REPLICA_URLS=${cluster.replicas.map((r) => r.url).join(',')}`,
      '# Ctrl-C to stop',
      '',
    ].join('\n'),
  );
  // The servers are unref'd children: without a handle of our own, Node would exit right here.
  const keepAlive = setInterval(() => {}, 1 << 30);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(keepAlive);
  await cluster.stop();
  process.stdout.write('# stopped\n');
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `lagless-cluster: ${isTestkitError(error) ? `[${error.code}] ` : ''}${(error as Error).message}\n`,
    );
    process.exit(1);
  },
);

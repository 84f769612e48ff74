// npm run demo [-- --once] [-- --port N]
// A real primary and two streaming replicas on this machine, then four routers side by side: lagless
// over Prisma (fast path) and over Drizzle, @prisma/extension-read-replicas and drizzle-orm's own
// withReplicas. The story: a replica behind (stale reads), a replica killed (failed reads), a replica
// slowed by 5 ms, a replica lagging by 1 s. A live status page shows it all; see demo.ts and story.ts.
import { parseArgs } from 'node:util';
import { runDemo } from './demo.js';

const { values } = parseArgs({
  options: { once: { type: 'boolean', default: false }, port: { type: 'string', default: '0' } },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`Expected \`--port\` to be an integer from 0 to 65535, got ${JSON.stringify(values.port)}`);
  process.exit(2);
}

const stop = new AbortController();
process.once('SIGINT', () => {
  console.log('\nstopping (Ctrl-C again to exit at once)');
  stop.abort();
  // testkit stops the servers it started when the process exits, also this way.
  process.once('SIGINT', () => process.exit(130));
});

const result = await runDemo({ once: values.once, port, signal: stop.signal });
// The story checks lagless's claims on real servers: if one did not hold, say so with the exit code.
// Exit explicitly: with everything closed, Node 20's teardown after the 'exit' handlers sometimes spun
// on the main thread here (3 runs in 12), and `npm run demo -- --once` must end.
process.exit(result.broken.length > 0 ? 1 : 0);

// What both app processes share: their configuration from the environment, the user id header
// (the token-store key), and a life cycle main.ts can drive (ready message, orderly stop, no orphan).

/** The header naming the signed-in user. A real app takes the id from its session or auth token. */
export const USER_HEADER = 'x-user-id';

export interface AppConfig {
  readonly primary: string;
  readonly replicas: readonly string[];
  readonly redis: string;
  readonly port: number;
}

/** LAGLESS_PRIMARY_URL, LAGLESS_REPLICA_URLS (comma-separated), REDIS_URL, PORT (default: any free one). */
export function appConfig(): AppConfig {
  const primary = process.env.LAGLESS_PRIMARY_URL;
  const redis = process.env.REDIS_URL;
  if (!primary || !redis) throw new Error('set LAGLESS_PRIMARY_URL and REDIS_URL (main.ts does)');
  const replicas = (process.env.LAGLESS_REPLICA_URLS ?? '').split(',').filter((url) => url.length > 0);
  return { primary, replicas, redis, port: Number(process.env.PORT ?? 0) };
}

/** The token-store key of a request: its user, or none (an anonymous request carries its token itself). */
export function userId(headers: Record<string, string | string[] | undefined>): string | undefined {
  const value = headers[USER_HEADER];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** The note a read saw (null: not there on the server that ran it), and that server's port. */
export interface NoteRead {
  readonly note: { id: number; owner: string; body: string } | null;
  readonly servedBy: number;
}

export function toNoteRead(row: { port: unknown; id: unknown; owner: unknown; body: unknown } | undefined): NoteRead {
  return {
    note: row?.id == null ? null : { id: Number(row.id), owner: String(row.owner), body: String(row.body) },
    servedBy: Number(row?.port),
  };
}

/** A message from an app process to main.ts. */
export interface AppMessage {
  readonly url: string;
}

/**
 * Listens, tells main.ts (or the terminal) where, and stops cleanly on SIGTERM/SIGINT or when
 * main.ts goes away (its IPC channel closes), so no app process outlives the example.
 */
/**
 * Start-up checks that failed do not stop the app: lagless serves what it can meanwhile and keeps
 * checking (a loaded machine may answer the first probe late). The reason is logged, loudly.
 */
export async function reportReadiness(name: string, lagless: { ready(): Promise<void> }): Promise<void> {
  await lagless.ready().catch((error: unknown) => {
    console.error(`[${name}] not every node passed its first check, serving anyway: ${String(error)}`);
  });
}

export async function runApp(name: string, app: { listen(): Promise<string>; close(): Promise<void> }) {
  let stopping = false;
  const stop = () => {
    // Once: a signal and the IPC channel closing may both arrive.
    if (stopping) return;
    stopping = true;
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`[${name}] could not close cleanly:`, error);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.once('disconnect', stop);
  const url = await app.listen();
  if (process.send) process.send({ url } satisfies AppMessage);
  else console.log(`[${name}] listening on ${url}`);
}

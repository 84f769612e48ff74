import { connect, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { inspect } from 'node:util';
import { redactUrl, TestkitError } from './errors.js';

/**
 * Which way latency applies, named as in toxiproxy's latency toxic:
 * `downstream` delays bytes flowing from the target back to the client,
 * `upstream` delays bytes flowing from the client to the target.
 */
export type ProxyDirection = 'downstream' | 'upstream' | 'both';

/** The server behind the proxy, as given in options. */
export interface FaultProxyTarget {
  /** @default '127.0.0.1' */
  host?: string;
  /** TCP port of the server behind the proxy (required, no default). */
  port: number;
}

/** The server behind the proxy, resolved: what `proxy.target` reports. */
export interface FaultProxyAddress {
  readonly host: string;
  readonly port: number;
}

export interface RetargetOptions {
  /**
   * Reset every open connection pair (TCP RST to both sides), as clients see it when a virtual IP
   * moves to another host. With `false`, open connections keep talking to the old target and only
   * new ones reach the new target.
   * @default true
   */
  resetExisting?: boolean;
}

export interface FaultProxyOptions {
  /**
   * The server to forward to: a host and port, or a URL whose host and port
   * are used: `postgres://` (port 5432 when the URL has none), or any other
   * scheme with an explicit port (`redis://127.0.0.1:6379`).
   */
  target: FaultProxyTarget | string;
  /**
   * Loopback port to listen on; 0 lets the OS pick a free one.
   * @default 0
   */
  listenPort?: number;
  /**
   * Delay added to every chunk travelling in `direction`.
   * @default 0
   */
  latencyMs?: number;
  /**
   * Which way `latencyMs` applies. With `downstream` each request/response
   * round trip costs `latencyMs` once; with `both`, twice.
   * @default 'downstream'
   */
  direction?: ProxyDirection;
}

export interface FaultProxy extends AsyncDisposable {
  /** Always `127.0.0.1`: the proxy never listens beyond loopback. */
  readonly host: string;
  readonly port: number;
  /** Where new connections go: the `target` option, or the last `retarget()`. */
  readonly target: FaultProxyAddress;
  /** Client connections currently open through the proxy. */
  readonly connectionCount: number;
  readonly latencyMs: number;
  readonly direction: ProxyDirection;
  readonly stalled: boolean;
  readonly refusing: boolean;
  /**
   * `databaseUrl` with its host and port replaced by the proxy's; user,
   * password, database and other query parameters are kept.
   */
  url(databaseUrl: string): string;
  /** Applies to bytes received from now on; bytes already queued keep their delay. */
  setLatency(ms: number, direction?: ProxyDirection): void;
  /** Holds every byte in both directions; connections stay open, so queries hang. */
  stall(): void;
  /** Releases held bytes, in order, and resumes normal forwarding. */
  unstall(): void;
  /** Aborts every open connection pair with a TCP RST, dropping held bytes. */
  resetConnections(): void;
  /** While `true`, new connections are reset as soon as they are accepted. */
  refuseConnections(refuse: boolean): void;
  /**
   * Points the proxy at another server, as when a virtual IP or a DNS name moves to a new host
   * after a failover: connections accepted from now on go to `target` (validated like the `target`
   * option; a bad one throws `INVALID_OPTION` and changes nothing). Open connection pairs are reset
   * unless `options.resetExisting` is `false`. Latency, stall and refusal settings are kept.
   */
  retarget(target: FaultProxyTarget | string, options?: RetargetOptions): void;
  /** Resets every connection and stops listening; resolves once the server is closed. */
  close(): Promise<void>;
}

const DIRECTIONS: readonly ProxyDirection[] = ['downstream', 'upstream', 'both'];
const DEFAULT_TARGET_HOST = '127.0.0.1';
const DEFAULT_POSTGRES_PORT = 5432;
const LISTEN_HOST = '127.0.0.1';
/**
 * Bytes a lane may hold before it stops reading its source, so a long stall
 * or a large latency pushes back on the sender through TCP instead of growing
 * memory without bound.
 */
const LANE_HIGH_WATER_MARK = 1024 * 1024;

/** Starts a loopback TCP proxy in front of `options.target`. */
export async function createFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const config = resolveOptions(options);
  const server = createServer({ allowHalfOpen: true });
  await listen(server, config.listenPort);
  return new TcpFaultProxy(server, config);
}

interface ResolvedOptions {
  readonly target: FaultProxyAddress;
  readonly listenPort: number;
  readonly latencyMs: number;
  readonly direction: ProxyDirection;
}

interface ConnectionPair {
  readonly client: Socket;
  readonly upstream: Socket;
  readonly lanes: readonly [Lane, Lane];
}

class TcpFaultProxy implements FaultProxy {
  readonly #server: Server;
  readonly #port: number;
  readonly #pairs = new Set<ConnectionPair>();
  #target: FaultProxyAddress;
  #latencyMs: number;
  #direction: ProxyDirection;
  #stalled = false;
  #refusing = false;
  #closed: Promise<void> | undefined;

  constructor(server: Server, config: ResolvedOptions) {
    this.#server = server;
    this.#target = config.target;
    this.#latencyMs = config.latencyMs;
    this.#direction = config.direction;
    const address = server.address();
    if (address === null || typeof address === 'string') {
      throw new TestkitError('PROXY_ERROR', `fault proxy has no TCP address: ${String(address)}`);
    }
    this.#port = address.port;
    server.on('connection', (socket) => this.#accept(socket));
    // Accept failures (EMFILE and the like) only concern the connection being
    // accepted; the proxy keeps serving the others.
    server.on('error', () => {});
  }

  get host(): string {
    return LISTEN_HOST;
  }

  get port(): number {
    return this.#port;
  }

  get target(): FaultProxyAddress {
    return this.#target;
  }

  get connectionCount(): number {
    let open = 0;
    for (const pair of this.#pairs) if (!pair.client.destroyed) open += 1;
    return open;
  }

  get latencyMs(): number {
    return this.#latencyMs;
  }

  get direction(): ProxyDirection {
    return this.#direction;
  }

  get stalled(): boolean {
    return this.#stalled;
  }

  get refusing(): boolean {
    return this.#refusing;
  }

  url(databaseUrl: string): string {
    const url = parsePostgresUrl(databaseUrl, 'databaseUrl');
    url.hostname = LISTEN_HOST;
    url.port = String(this.#port);
    // node-postgres and libpq let `?host=` / `?port=` override the authority,
    // which would silently route around the proxy.
    if (url.searchParams.has('host') || url.searchParams.has('port')) {
      url.searchParams.delete('host');
      url.searchParams.delete('port');
    }
    return url.href;
  }

  setLatency(ms: number, direction: ProxyDirection = this.#direction): void {
    const latencyMs = validateLatency(ms, 'ms');
    this.#direction = validateDirection(direction, 'direction');
    this.#latencyMs = latencyMs;
  }

  stall(): void {
    this.#stalled = true;
  }

  unstall(): void {
    if (!this.#stalled) return;
    this.#stalled = false;
    for (const pair of this.#pairs) for (const lane of pair.lanes) lane.flush();
  }

  resetConnections(): void {
    for (const pair of this.#pairs) this.#reset(pair);
  }

  refuseConnections(refuse: boolean): void {
    this.#refusing = refuse;
  }

  retarget(target: FaultProxyTarget | string, options: RetargetOptions = {}): void {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('retarget options', options, 'an object');
    }
    const { resetExisting = true } = options;
    if (typeof resetExisting !== 'boolean') throw invalidOption('resetExisting', resetExisting, 'a boolean');
    this.#target = resolveTarget(target);
    if (resetExisting) this.resetConnections();
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#refusing = true;
      // server.close() waits for accepted sockets, so they must go first.
      this.resetConnections();
      this.#server.close(() => resolve());
    });
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  get #upstreamLatencyMs(): number {
    return this.#direction === 'downstream' ? 0 : this.#latencyMs;
  }

  get #downstreamLatencyMs(): number {
    return this.#direction === 'upstream' ? 0 : this.#latencyMs;
  }

  #accept(client: Socket): void {
    // A peer that resets emits 'error'; unhandled, it would take down the
    // process hosting the tests.
    client.on('error', () => {});
    if (this.#refusing) {
      resetSocket(client);
      return;
    }
    const upstream = connect({ host: this.#target.host, port: this.#target.port, allowHalfOpen: true });
    upstream.on('error', () => {});
    // Nagle's algorithm would add its own delay on top of the one asked for.
    client.setNoDelay(true);
    upstream.setNoDelay(true);

    const isStalled = (): boolean => this.#stalled;
    const toTarget = new Lane(client, upstream, () => this.#upstreamLatencyMs, isStalled);
    const toClient = new Lane(upstream, client, () => this.#downstreamLatencyMs, isStalled);
    const pair: ConnectionPair = { client, upstream, lanes: [toTarget, toClient] };
    this.#pairs.add(pair);

    client.on('data', (chunk: Buffer) => toTarget.push(chunk));
    upstream.on('data', (chunk: Buffer) => toClient.push(chunk));
    client.on('end', () => toTarget.end());
    upstream.on('end', () => toClient.end());
    // A failure on one side must look like a failure on the other, as it
    // would without the proxy in between.
    client.on('error', () => resetSocket(upstream));
    upstream.on('error', () => resetSocket(client));

    const forget = (): void => {
      if (!client.destroyed || !upstream.destroyed) return;
      toTarget.dispose();
      toClient.dispose();
      this.#pairs.delete(pair);
    };
    client.on('close', forget);
    upstream.on('close', forget);
  }

  #reset(pair: ConnectionPair): void {
    for (const lane of pair.lanes) lane.dispose();
    resetSocket(pair.client);
    resetSocket(pair.upstream);
  }
}

interface QueuedChunk {
  readonly chunk: Buffer;
  readonly due: number;
}

/**
 * One direction of a connection pair. Every chunk gets a due time no earlier
 * than the previous chunk's, so changing the latency mid-stream can never
 * reorder bytes; one timer, armed for the head of the queue, drives it.
 */
class Lane {
  readonly #source: Socket;
  readonly #destination: Socket;
  readonly #latencyMs: () => number;
  readonly #isStalled: () => boolean;
  #queue: QueuedChunk[] = [];
  #queuedBytes = 0;
  #lastDue = 0;
  #timer: NodeJS.Timeout | undefined;
  #awaitingDrain = false;
  #sourceEnded = false;
  #endForwarded = false;
  #disposed = false;

  constructor(source: Socket, destination: Socket, latencyMs: () => number, isStalled: () => boolean) {
    this.#source = source;
    this.#destination = destination;
    this.#latencyMs = latencyMs;
    this.#isStalled = isStalled;
  }

  push(chunk: Buffer): void {
    if (this.#disposed) return;
    const due = Math.max(performance.now() + this.#latencyMs(), this.#lastDue);
    this.#lastDue = due;
    this.#queue.push({ chunk, due });
    this.#queuedBytes += chunk.length;
    // A pending timer already covers this chunk: it is due no earlier than the head.
    if (this.#timer === undefined) this.flush();
    else this.#updateFlow();
  }

  /** The source's FIN travels like data: after every byte queued before it. */
  end(): void {
    this.#sourceEnded = true;
    if (this.#timer === undefined) this.flush();
  }

  flush = (): void => {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#disposed) return;
    if (this.#destination.destroyed) {
      this.dispose();
      return;
    }
    if (this.#isStalled()) {
      this.#updateFlow();
      return;
    }
    const now = performance.now();
    let head = this.#queue[0];
    while (head !== undefined) {
      const wait = head.due - now;
      if (wait > 0) {
        // Rounded up: a timer that fires a fraction early would otherwise
        // deliver a chunk before its latency has fully elapsed.
        this.#timer = setTimeout(this.flush, Math.ceil(wait));
        this.#timer.unref();
        break;
      }
      this.#queue.shift();
      this.#queuedBytes -= head.chunk.length;
      if (!this.#destination.write(head.chunk)) this.#awaitDrain();
      head = this.#queue[0];
    }
    if (this.#queue.length === 0 && this.#sourceEnded && !this.#endForwarded) {
      this.#endForwarded = true;
      this.#destination.end();
    }
    this.#updateFlow();
  };

  dispose(): void {
    this.#disposed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
    this.#queuedBytes = 0;
  }

  #awaitDrain(): void {
    if (this.#awaitingDrain) return;
    this.#awaitingDrain = true;
    this.#destination.once('drain', () => {
      this.#awaitingDrain = false;
      this.#updateFlow();
    });
  }

  #updateFlow(): void {
    if (this.#source.destroyed) return;
    const hold = this.#awaitingDrain || this.#queuedBytes > LANE_HIGH_WATER_MARK;
    if (hold) this.#source.pause();
    else if (this.#source.isPaused()) this.#source.resume();
  }
}

/** RST rather than FIN, so peers see an abrupt failure (ECONNRESET), not a clean close. */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  // resetAndDestroy() on a socket still connecting defers the reset until the
  // connection succeeds; nothing was exchanged yet, so closing it now is enough.
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      reject(
        new TestkitError('PROXY_ERROR', `fault proxy could not listen on ${LISTEN_HOST}:${port}: ${error.message}`, {
          cause: error,
        }),
      );
    };
    server.once('error', onError);
    server.listen({ host: LISTEN_HOST, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function resolveOptions(options: FaultProxyOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', options, 'an object');
  }
  return Object.freeze({
    target: resolveTarget(options.target),
    listenPort: options.listenPort === undefined ? 0 : validatePort(options.listenPort, 'listenPort', 0),
    latencyMs: options.latencyMs === undefined ? 0 : validateLatency(options.latencyMs, 'latencyMs'),
    direction: options.direction === undefined ? 'downstream' : validateDirection(options.direction, 'direction'),
  });
}

function resolveTarget(target: FaultProxyOptions['target']): FaultProxyAddress {
  if (typeof target === 'string') {
    const url = URL.canParse(target) ? new URL(target) : undefined;
    const isPostgres = url?.protocol === 'postgres:' || url?.protocol === 'postgresql:';
    // Only PostgreSQL has a port we may assume; for any other scheme the URL must say.
    if (url === undefined || (!isPostgres && url.port === '')) {
      throw invalidOption('target', redactUrl(target), 'a postgres:// URL, or a URL with a host and an explicit port');
    }
    return Object.freeze({
      // WHATWG URLs keep IPv6 brackets, which net.connect() does not accept.
      host: url.hostname.replace(/^\[(.*)\]$/, '$1') || DEFAULT_TARGET_HOST,
      port: url.port === '' ? DEFAULT_POSTGRES_PORT : Number(url.port),
    });
  }
  if (typeof target !== 'object' || target === null) {
    throw invalidOption('target', target, 'a { host?, port } object or a URL');
  }
  if (target.host !== undefined && (typeof target.host !== 'string' || target.host === '')) {
    throw invalidOption('target.host', target.host, 'a non-empty string');
  }
  return Object.freeze({ host: target.host ?? DEFAULT_TARGET_HOST, port: validatePort(target.port, 'target.port', 1) });
}

function parsePostgresUrl(value: string, option: string): URL {
  let url: URL | undefined;
  if (typeof value === 'string' && URL.canParse(value)) url = new URL(value);
  if (url === undefined || (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')) {
    const shown = typeof value === 'string' ? redactUrl(value) : value;
    throw invalidOption(option, shown, 'a postgres:// URL with a single host');
  }
  return url;
}

function validatePort(value: unknown, option: string, min: 0 | 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 65535) {
    throw invalidOption(option, value, `an integer from ${min} to 65535`);
  }
  return value;
}

function validateLatency(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw invalidOption(option, value, 'a finite number of milliseconds >= 0');
  }
  return value;
}

function validateDirection(value: unknown, option: string): ProxyDirection {
  if (!DIRECTIONS.includes(value as ProxyDirection)) {
    throw invalidOption(option, value, `one of ${DIRECTIONS.map((d) => `'${d}'`).join(', ')}`);
  }
  return value as ProxyDirection;
}

function invalidOption(option: string, received: unknown, expected: string): TestkitError {
  return new TestkitError(
    'INVALID_OPTION',
    `Invalid fault proxy option ${option}: expected ${expected}, received ${inspect(received)}`,
  );
}

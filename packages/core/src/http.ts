import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { invalidOption } from './errors.js';
import type { SessionInit } from './router.js';
import type { ServedRead } from './served-read.js';

/** Request header that carries a consistency token from one request to the next. */
export const TOKEN_HEADER = 'x-lagless-token';
/** Cookie that carries it for browsers, which do not echo custom headers. */
export const TOKEN_COOKIE = 'lagless_token';

/** What the HTTP helpers need: a router, or an adapter's `$lagless`. */
export interface TokenScope {
  session<T>(init: SessionInit, fn: () => Promise<T> | T): Promise<T>;
  token(): Promise<string | undefined>;
}

export interface TokenHttpOptions<R> {
  /** Also read and write the `lagless_token` cookie. @default true */
  cookie?: boolean;
  /** Attributes of the cookie written back. @default 'Path=/; HttpOnly; SameSite=Lax' */
  cookieAttributes?: string;
  /**
   * A token-store key for this request (e.g. the user id), when a store is configured; undefined or
   * empty means none. @default undefined
   */
  key?: ((request: R) => string | undefined) | undefined;
  /**
   * Add a `Server-Timing` header naming the nodes that served the request's reads, one entry per
   * node with its read count and total time (`lagless;desc="replica1 x3";dur=4.2`), for browser
   * devtools and tracing proxies. It costs an `onRead` hook on each read of the request. @default false
   */
  serverTiming?: boolean;
}

type HeaderValue = string | string[] | null | undefined;

function first(value: HeaderValue): string | undefined {
  return Array.isArray(value) ? value[0] : (value ?? undefined);
}

/** The token of a request: the header wins over the cookie; empty means none. */
export function readToken(getHeader: (name: string) => HeaderValue, cookie = true): string | undefined {
  const header = first(getHeader(TOKEN_HEADER))?.trim();
  if (header) return header;
  if (!cookie) return undefined;
  const cookies = first(getHeader('cookie'));
  if (!cookies) return undefined;
  for (const part of cookies.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === TOKEN_COOKIE) {
      const value = part.slice(eq + 1).trim();
      return value.length > 0 ? value : undefined;
    }
  }
  return undefined;
}

const DEFAULT_COOKIE_ATTRIBUTES = 'Path=/; HttpOnly; SameSite=Lax';
// What Node lets into a header value: anything else would fail every response at setHeader().
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

interface ResolvedHttpOptions<R> {
  readonly cookie: boolean;
  readonly cookieAttributes: string;
  readonly serverTiming: boolean;
  readonly key: ((request: R) => string | undefined) | undefined;
}

/** Checked once, when the middleware or plugin is made, so a mistake fails at start-up, not per request. */
function resolveHttpOptions<R>(
  helper: string,
  scope: TokenScope,
  options: TokenHttpOptions<R>,
): ResolvedHttpOptions<R> {
  if (typeof scope?.session !== 'function' || typeof scope.token !== 'function') {
    throw invalidOption(`${helper}(scope)`, "a router or an adapter's $lagless", scope);
  }
  if (typeof options !== 'object' || options === null) {
    throw invalidOption(`${helper}(options)`, 'an object', options);
  }
  const { cookie = true, cookieAttributes = DEFAULT_COOKIE_ATTRIBUTES, key, serverTiming = false } = options;
  if (typeof serverTiming !== 'boolean') {
    throw invalidOption(`${helper}(options).serverTiming`, 'a boolean', serverTiming);
  }
  if (typeof cookie !== 'boolean') throw invalidOption(`${helper}(options).cookie`, 'a boolean', cookie);
  if (typeof cookieAttributes !== 'string' || !HEADER_VALUE.test(cookieAttributes)) {
    throw invalidOption(
      `${helper}(options).cookieAttributes`,
      'a string without line breaks or control characters',
      cookieAttributes,
    );
  }
  if (key !== undefined && typeof key !== 'function') {
    throw invalidOption(`${helper}(options).key`, 'a function of the request', key);
  }
  return Object.freeze({ cookie, cookieAttributes, key, serverTiming });
}

/**
 * What a response carries back: a token header when the token moved on, a cookie line, and the
 * nodes that served its reads when `serverTiming` is on.
 */
interface ResponseHeaders {
  readonly token: string | undefined;
  readonly setCookie: string | undefined;
  readonly serverTiming: string | undefined;
}

/** Reads of one request, by node, in the order the nodes first served one. */
class ServedNodes {
  readonly #byNode = new Map<string, { reads: number; ms: number }>();

  readonly add = (read: ServedRead): void => {
    const node = this.#byNode.get(read.node);
    if (node === undefined) this.#byNode.set(read.node, { reads: 1, ms: read.durationMs });
    else {
      node.reads++;
      node.ms += read.durationMs;
    }
  };

  /** The Server-Timing value, or undefined when no read ran. */
  header(): string | undefined {
    if (this.#byNode.size === 0) return undefined;
    return [...this.#byNode]
      .map(
        ([name, { reads, ms }]) =>
          `lagless;desc="${quoted(reads > 1 ? `${name} x${reads}` : name)}";dur=${ms.toFixed(1)}`,
      )
      .join(', ');
  }
}

/** A node name inside a quoted-string: no quotes, backslashes or control characters get through. */
function quoted(text: string): string {
  return text.replace(/[^\x20-\x7e]|["\\]/g, '_');
}

/**
 * One request's session init (its token, its store key), and the headers its response must carry
 * once the session's token is known.
 */
interface RequestSession {
  readonly init: SessionInit;
  headers(computed: string | undefined): ResponseHeaders;
}

function requestSession<R>(request: R, incoming: string | undefined, options: ResolvedHttpOptions<R>): RequestSession {
  let rejected = false;
  const init: SessionInit = {
    token: incoming,
    onTokenRejected: () => {
      rejected = true;
    },
  };
  const key = options.key?.(request);
  // Empty is none, as for a token: an anonymous request must not fail on the store's key check.
  if (key !== undefined && key !== '') init.key = key;
  const served = options.serverTiming ? new ServedNodes() : undefined;
  if (served !== undefined) init.onRead = served.add;
  const { cookie, cookieAttributes } = options;
  return {
    init,
    headers: (computed) => {
      const serverTiming = served?.header();
      // The client already holds the token it sent: a header and a cookie only when it moved on.
      if (computed !== undefined && computed !== incoming) {
        // Tokens only contain [A-Za-z0-9._-]: nothing to escape.
        const setCookie = cookie ? `${TOKEN_COOKIE}=${computed}; ${cookieAttributes}` : undefined;
        return { token: computed, setCookie, serverTiming };
      }
      // Replaces a cookie holding a token we ignored, so the browser stops sending it.
      if (computed === undefined && cookie && rejected) {
        return { token: undefined, setCookie: `${TOKEN_COOKIE}=; Max-Age=0; ${cookieAttributes}`, serverTiming };
      }
      return { token: undefined, setCookie: undefined, serverTiming };
    },
  };
}

/** The session's token, or none: the response is what matters now, never an error of ours. */
async function tokenOrNone(scope: TokenScope): Promise<string | undefined> {
  try {
    return await scope.token();
  } catch {
    return undefined;
  }
}

/**
 * A way back into the session we are in now, for code that may run where the async context was lost
 * (a callback from a client library's socket, an `end()` called from one).
 */
function sessionContext(): <T>(fn: () => T) => T {
  const resource = new AsyncResource('lagless-token-session');
  return (fn) => resource.runInAsyncScope(fn);
}

/** Calls `fn` once the response is over: sent, or its connection gone (a client that gave up). */
function whenClosed(res: ServerResponse, fn: () => void): void {
  if (res.closed) fn();
  else res.once('close', fn);
}

/**
 * Runs `inside` in the request's session until the response closes. `fail` hears an error only
 * while the request has not started (a throwing `key` function, a closed router): once it is under
 * way, the framework's own error handling has it.
 */
function runInSession<R>(
  scope: TokenScope,
  request: R,
  incoming: string | undefined,
  options: ResolvedHttpOptions<R>,
  res: ServerResponse,
  fail: (error: unknown) => void,
  inside: (session: RequestSession, inSession: <T>(fn: () => T) => T) => void,
): void {
  let session: RequestSession;
  try {
    session = requestSession(request, incoming, options);
  } catch (error) {
    fail(error);
    return;
  }
  let entered = false;
  scope
    .session(
      session.init,
      () =>
        new Promise<void>((resolve) => {
          entered = true;
          whenClosed(res, resolve);
          inside(session, sessionContext());
        }),
    )
    .catch((error: unknown) => {
      if (!entered) fail(error);
    });
}

/**
 * Web-standard `Request`/`Response` (Hono, Next.js route handlers, Deno, Bun): runs `handler` in a
 * consistency scope continued from the request's token, and returns its response with the updated
 * token attached.
 */
export async function withTokenScope(
  scope: TokenScope,
  request: Request,
  handler: (request: Request) => Promise<Response> | Response,
  options: TokenHttpOptions<Request> = {},
): Promise<Response> {
  const resolved = resolveHttpOptions('withTokenScope', scope, options);
  const session = requestSession(
    request,
    readToken((name) => request.headers.get(name), resolved.cookie),
    resolved,
  );
  return scope.session(session.init, async () => {
    const response = await handler(request);
    const { token, setCookie, serverTiming } = session.headers(await tokenOrNone(scope));
    if (token === undefined && setCookie === undefined && serverTiming === undefined) return response;
    // Responses from fetch() or Response.redirect() have immutable headers: copy before touching them.
    const out = new Response(response.body, response);
    if (token !== undefined) out.headers.set(TOKEN_HEADER, token);
    if (setCookie !== undefined) out.headers.append('set-cookie', setCookie);
    if (serverTiming !== undefined) out.headers.append('server-timing', serverTiming);
    return out;
  });
}

/**
 * Node `http` middleware (Express, Connect, and anything on IncomingMessage/ServerResponse). The
 * response's `end()` is held until the request's token is known, so the header leaves with the
 * response; a handler that streams (writes the body before ending) sends its headers early and gets
 * no token header.
 *
 * Middleware that calls `next()` from a callback outside the request's async context (an old body
 * parser, a callback-based client) takes the rest of the request out of the session: put such
 * middleware before this one. The token is computed in the session wherever `end()` is called from.
 */
export function tokenMiddleware(
  scope: TokenScope,
  options: TokenHttpOptions<IncomingMessage> = {},
): (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void {
  const resolved = resolveHttpOptions('tokenMiddleware', scope, options);
  return (req, res, next) => {
    runInSession(
      scope,
      req,
      readToken((name) => req.headers[name], resolved.cookie),
      resolved,
      res,
      next,
      (session, inSession) => {
        const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
        res.end = ((...args: unknown[]) => {
          // In the session whatever context end() is called from, so token() sees this request's writes.
          void inSession(() => tokenOrNone(scope)).then((computed) => {
            const { token, setCookie, serverTiming } = session.headers(computed);
            if (!res.headersSent) {
              if (token !== undefined) res.setHeader(TOKEN_HEADER, token);
              if (setCookie !== undefined) res.appendHeader('set-cookie', setCookie);
              if (serverTiming !== undefined) res.appendHeader('server-timing', serverTiming);
            }
            end(...args);
          });
          return res;
        }) as ServerResponse['end'];
        next();
      },
    );
  };
}

/** The subset of a Fastify request the plugin reads. */
export interface FastifyRequestLike {
  readonly headers: IncomingHttpHeaders;
}

/** The subset of a Fastify reply the plugin uses. */
export interface FastifyReplyLike {
  readonly raw: ServerResponse;
  header(name: string, value: string): unknown;
  getHeader(name: string): unknown;
}

/** The subset of a Fastify instance the plugin uses (structural: core does not depend on fastify). */
export interface FastifyInstanceLike {
  addHook(
    name: 'onRequest' | 'preValidation' | 'preHandler',
    hook: (request: FastifyRequestLike, reply: FastifyReplyLike, done: (error?: Error) => void) => void,
  ): unknown;
  addHook(
    name: 'onSend',
    hook: (
      request: FastifyRequestLike,
      reply: FastifyReplyLike,
      payload: unknown,
      done: (error?: Error | null) => void,
    ) => void,
  ): unknown;
}

/** A Fastify plugin: `app.register(tokenPlugin(scope))`. */
export type FastifyTokenPlugin = (
  instance: FastifyInstanceLike,
  options: Record<string, unknown>,
  done: (error?: Error) => void,
) => void;

/** The name other plugins can list in their `dependencies`. */
export const FASTIFY_PLUGIN_NAME = '@lagless/core/http';

/**
 * Fastify plugin: each request runs in a consistency scope continued from its token, and its reply
 * carries the updated token (set in an `onSend` hook, so streamed and error replies get it too;
 * `reply.hijack()`ed ones do not).
 *
 * It is not encapsulated (it skips encapsulation as `fastify-plugin` does): registered on an
 * instance, it applies to every route of that instance and of the plugins registered on it, sibling
 * plugins included, whether they were registered before or after it; registered inside a plugin, it
 * stays there. The session starts in an `onRequest` hook, so register it first: `onRequest` hooks
 * added before it run outside the session, everything after (later `onRequest` hooks, `preParsing`,
 * `preValidation`, `preHandler`, the handler, `onSend`) inside it. The session ends when the
 * response has been sent or the client went away.
 */
export function tokenPlugin<R extends FastifyRequestLike = FastifyRequestLike>(
  scope: TokenScope,
  options: TokenHttpOptions<R> = {},
): FastifyTokenPlugin {
  const resolved = resolveHttpOptions('tokenPlugin', scope, options);
  // Per request, once its session has started: the way back into it, and what its reply carries.
  const requests = new WeakMap<
    FastifyRequestLike,
    { readonly inSession: <T>(fn: () => T) => T; readonly session: RequestSession }
  >();
  // Which request's session the running code is in: re-entering one we never left would drop the
  // context that hooks after ours set up (another plugin's AsyncLocalStorage).
  const current = new AsyncLocalStorage<FastifyRequestLike>();

  function onRequest(request: FastifyRequestLike, reply: FastifyReplyLike, done: (error?: Error) => void): void {
    const incoming = readToken((name) => request.headers[name], resolved.cookie);
    const fail = (error: unknown) => done(error as Error);
    runInSession(scope, request as R, incoming, resolved, reply.raw, fail, (session) => {
      current.run(request, () => {
        // Captured inside current.run, so re-entering restores both the session and this request.
        requests.set(request, { inSession: sessionContext(), session });
        // Fastify's lifecycle goes on from here, in the session (as @fastify/request-context does).
        done();
      });
    });
  }

  /**
   * Back into the session if the context was lost: a hook before this one resumed the lifecycle from
   * another async context (a client library's callback, say).
   */
  function reenter(request: FastifyRequestLike, _reply: FastifyReplyLike, done: (error?: Error) => void): void {
    const state = current.getStore() === request ? undefined : requests.get(request);
    if (state === undefined) done();
    else state.inSession(done);
  }

  function onSend(
    request: FastifyRequestLike,
    reply: FastifyReplyLike,
    _payload: unknown,
    done: (error?: Error | null) => void,
  ): void {
    const state = requests.get(request);
    if (state === undefined) {
      done();
      return;
    }
    void state
      .inSession(() => tokenOrNone(scope))
      .then((computed) => {
        const { token, setCookie, serverTiming } = state.session.headers(computed);
        if (token !== undefined) reply.header(TOKEN_HEADER, token);
        // Fastify appends to earlier set-cookie headers rather than replacing them.
        if (setCookie !== undefined) reply.header('set-cookie', setCookie);
        if (serverTiming !== undefined) {
          const earlier = reply.getHeader('server-timing');
          reply.header('server-timing', earlier === undefined ? serverTiming : `${String(earlier)}, ${serverTiming}`);
        }
      })
      .then(
        () => done(),
        (error: unknown) => done(error as Error),
      );
  }

  const plugin: FastifyTokenPlugin = (instance, _options, done) => {
    instance.addHook('onRequest', onRequest);
    instance.addHook('preValidation', reenter);
    // Again, in case a hook before this one lost the context the same way.
    instance.addHook('preHandler', reenter);
    instance.addHook('onSend', onSend);
    done();
  };
  // What fastify-plugin sets: no encapsulation, a name for `dependencies` and for Fastify's errors.
  return Object.defineProperties(plugin, {
    [Symbol.for('skip-override')]: { value: true },
    [Symbol.for('fastify.display-name')]: { value: FASTIFY_PLUGIN_NAME },
    [Symbol.for('plugin-meta')]: { value: Object.freeze({ name: FASTIFY_PLUGIN_NAME }) },
  });
}

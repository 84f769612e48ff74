import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SessionInit } from './router.js';

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
  /** A token-store key for this request (e.g. the user id), when a store is configured. @default undefined */
  key?: (request: R) => string | undefined;
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

function cookieLine(token: string, attributes: string): string {
  // Tokens only contain [A-Za-z0-9._-]: nothing to escape.
  return `${TOKEN_COOKIE}=${token}; ${attributes}`;
}

/** Replaces a cookie holding a token we ignored, so the browser stops sending it. */
function clearedCookieLine(attributes: string): string {
  return `${TOKEN_COOKIE}=; Max-Age=0; ${attributes}`;
}

/** What a response carries back: a token when it moved on, or a cookie clearing an ignored one. */
interface Outgoing {
  readonly token: string | undefined;
  readonly clearCookie: boolean;
}

/**
 * The session init for one request (its token, its store key), and what its response must carry
 * once the session's token is known.
 */
function requestInit<R>(
  request: R,
  incoming: string | undefined,
  options: TokenHttpOptions<R>,
): { init: SessionInit; outgoing: (computed: string | undefined) => Outgoing } {
  let rejected = false;
  const init: SessionInit = {
    token: incoming,
    onTokenRejected: () => {
      rejected = true;
    },
  };
  const key = options.key?.(request);
  if (key !== undefined) init.key = key;
  const cookie = options.cookie ?? true;
  return {
    init,
    // The client already holds the token it sent: a header and a cookie only when it moved on.
    outgoing: (computed) => ({
      token: computed !== undefined && computed !== incoming ? computed : undefined,
      clearCookie: computed === undefined && cookie && rejected,
    }),
  };
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
  const cookie = options.cookie ?? true;
  const attributes = options.cookieAttributes ?? DEFAULT_COOKIE_ATTRIBUTES;
  const { init, outgoing } = requestInit(
    request,
    readToken((name) => request.headers.get(name), cookie),
    options,
  );
  return scope.session(init, async () => {
    const response = await handler(request);
    // The response is what matters now: a token we cannot compute is left off, never an error.
    const { token, clearCookie } = outgoing(await scope.token().catch(() => undefined));
    if (!token && !clearCookie) return response;
    // Responses from fetch() or Response.redirect() have immutable headers: copy before touching them.
    const out = new Response(response.body, response);
    if (token) {
      out.headers.set(TOKEN_HEADER, token);
      if (cookie) out.headers.append('set-cookie', cookieLine(token, attributes));
    } else {
      out.headers.append('set-cookie', clearedCookieLine(attributes));
    }
    return out;
  });
}

/**
 * Node `http` middleware (Express, Connect, and anything on IncomingMessage/ServerResponse). The
 * response's `end()` is held until the request's token is known, so the header leaves with the
 * response; a handler that streams (writes the body before ending) sends its headers early and gets
 * no token header.
 */
export function tokenMiddleware(
  scope: TokenScope,
  options: TokenHttpOptions<IncomingMessage> = {},
): (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void {
  const cookie = options.cookie ?? true;
  const attributes = options.cookieAttributes ?? DEFAULT_COOKIE_ATTRIBUTES;
  return (req, res, next) => {
    const { init, outgoing } = requestInit(
      req,
      readToken((name) => req.headers[name], cookie),
      options,
    );
    scope
      .session(
        init,
        () =>
          new Promise<void>((resolve) => {
            const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
            // Called inside the session, so token() sees this request's writes.
            res.end = ((...args: unknown[]) => {
              scope.token().then(
                (computed) => {
                  const { token, clearCookie } = outgoing(computed);
                  if (!res.headersSent) {
                    if (token) {
                      res.setHeader(TOKEN_HEADER, token);
                      if (cookie) res.appendHeader('set-cookie', cookieLine(token, attributes));
                    } else if (clearCookie) {
                      res.appendHeader('set-cookie', clearedCookieLine(attributes));
                    }
                  }
                  end(...args);
                  resolve();
                },
                () => {
                  end(...args);
                  resolve();
                },
              );
              return res;
            }) as ServerResponse['end'];
            res.once('close', () => resolve());
            next();
          }),
      )
      .catch((error: unknown) => next(error));
  };
}

/** Why a testkit operation failed; stable strings callers may switch on. */
export type TestkitErrorCode =
  | 'BINARIES_NOT_FOUND'
  | 'INVALID_OPTION'
  | 'START_FAILED'
  | 'TIMEOUT'
  | 'UNSUPPORTED'
  | 'NOT_RUNNING'
  | 'PROXY_ERROR';

export interface TestkitErrorOptions {
  cause?: unknown;
  /** Last lines of the server log, when a server is involved. */
  logTail?: string;
}

export class TestkitError extends Error {
  override readonly name = 'TestkitError';
  readonly code: TestkitErrorCode;
  readonly logTail: string | undefined;

  constructor(code: TestkitErrorCode, message: string, options: TestkitErrorOptions = {}) {
    super(options.logTail ? `${message}\n--- server log (tail) ---\n${options.logTail}` : message, {
      cause: options.cause,
    });
    this.code = code;
    this.logTail = options.logTail;
  }
}

export function isTestkitError(value: unknown): value is TestkitError {
  return value instanceof Error && (value as { name?: unknown }).name === 'TestkitError';
}

/** Hides the password of a URL (postgres://, redis://, any scheme) so it can be printed or logged. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

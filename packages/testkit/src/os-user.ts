import { readFileSync } from 'node:fs';
import { TestkitError } from './errors.js';

/** The operating-system account PostgreSQL processes run as. */
export interface OsUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

function lookupUser(name: string): OsUser | undefined {
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined) {
      return { name, uid: Number(uid), gid: Number(gid) };
    }
  }
  return undefined;
}

/**
 * PostgreSQL refuses to run as root, so as root we hand its processes to an unprivileged account:
 * `preferred` (from options or LAGLESS_PG_OS_USER), else `postgres`, else `nobody`.
 * Returns undefined when we are not root: the server then runs as ourselves.
 */
export function resolveServerUser(preferred?: string): OsUser | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const names = preferred ? [preferred] : ['postgres', 'nobody'];
  for (const name of names) {
    const user = lookupUser(name);
    if (user && user.uid !== 0) return user;
  }
  throw new TestkitError(
    'INVALID_OPTION',
    `running as root, and no unprivileged account to run PostgreSQL as (tried ${names.join(', ')}); set osUser or LAGLESS_PG_OS_USER`,
  );
}

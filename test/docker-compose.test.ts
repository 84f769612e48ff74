// There is no Docker engine where this suite runs, so docker-compose.yml cannot
// be brought up here: this is a parse check of its structure, guarding the
// parts lagless relies on (replication settings, slots, ports, healthchecks).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

interface Service {
  image?: string;
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string> | string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  ports?: Array<string | { published?: string | number }>;
  healthcheck?: { test?: string | string[] };
  configs?: Array<string | { source: string; target?: string }>;
}

interface Compose {
  services: Record<string, Service>;
  configs?: Record<string, { content?: string; file?: string }>;
}

const text = readFileSync(new URL('../docker-compose.yml', import.meta.url), 'utf8');
const compose = parse(text) as Compose;
const REPLICAS = ['replica1', 'replica2'] as const;

function service(name: string): Service {
  const found = compose.services[name];
  if (found === undefined) throw new Error(`service ${name} is missing`);
  return found;
}

function joined(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(' ') : (value ?? '');
}

function env(svc: Service): Record<string, string> {
  if (!Array.isArray(svc.environment)) return svc.environment ?? {};
  return Object.fromEntries(svc.environment.map((entry) => entry.split('=', 2) as [string, string]));
}

/** The host side of a published port: `5432`, `5433:5432` and `127.0.0.1:5433:5432` forms. */
function publishedPorts(svc: Service): number[] {
  return (svc.ports ?? []).map((port) => {
    if (typeof port !== 'string') return Number(port.published);
    const parts = port.split(':');
    return Number(parts.length === 1 ? parts[0] : parts[parts.length - 2]);
  });
}

describe('docker-compose.yml', () => {
  it('defines the primary, two replicas and redis', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['primary', 'redis', 'replica1', 'replica2']);
    expect(service('primary').image).toMatch(/^postgres:17/);
    for (const name of REPLICAS) expect(service(name).image).toBe(service('primary').image);
    expect(service('redis').image).toMatch(/^redis:7/);
  });

  it('configures the primary for streaming replication', () => {
    const primary = service('primary');
    const command = joined(primary.command);
    expect(command).toContain('wal_level=replica');
    expect(command).toMatch(/max_wal_senders=\d+/);
    expect(command).toMatch(/max_replication_slots=\d+/);
    expect(command).toContain('hot_standby=on');
    expect(env(primary)).toMatchObject({ POSTGRES_PASSWORD: 'postgres', POSTGRES_DB: 'app' });

    const initScripts = (primary.configs ?? []).flatMap((config) =>
      typeof config === 'object' && config.target?.startsWith('/docker-entrypoint-initdb.d/')
        ? [compose.configs?.[config.source]?.content ?? '']
        : [],
    );
    expect(initScripts.join('\n')).toMatch(/host\s+replication\s+all\s+all\s+scram-sha-256/);
  });

  it('bootstraps each replica from the primary with its own slot', () => {
    const slots = REPLICAS.map((name) => {
      const replica = service(name);
      expect(replica.depends_on).toMatchObject({ primary: { condition: 'service_healthy' } });
      const script = joined(replica.entrypoint);
      expect(script).toMatch(/pg_basebackup\b[^\n]*-h primary\b/);
      expect(script).toMatch(/pg_basebackup\b[^\n]* -R\b/);
      expect(script).toMatch(/pg_basebackup\b[^\n]* -C\b/);
      expect(script).toMatch(/exec postgres\b/);
      const slotArgument = /pg_basebackup\b[^\n]* -S "?([$\w]+)"?/.exec(script)?.[1];
      const slot = slotArgument?.startsWith('$$') ? env(replica)[slotArgument.slice(2)] : slotArgument;
      return slot;
    });
    expect(slots).toEqual(['replica1', 'replica2']);
  });

  it('publishes distinct ports 5432, 5433, 5434 and 6379', () => {
    const ports = ['primary', ...REPLICAS, 'redis'].map((name) => publishedPorts(service(name)));
    expect(ports).toEqual([[5432], [5433], [5434], [6379]]);
  });

  it('gives every service a healthcheck', () => {
    for (const name of ['primary', ...REPLICAS]) {
      expect(joined(service(name).healthcheck?.test)).toContain('pg_isready');
    }
    expect(joined(service('redis').healthcheck?.test)).toContain('redis-cli ping');
  });

  it('escapes shell variables from compose interpolation', () => {
    // Compose would substitute a lone `$PGDATA` from the host environment
    // (usually with an empty string) before the container ever saw it.
    expect(text).not.toMatch(/(?<!\$)\$(?!\$)[A-Za-z_({]/);
  });

  it('tells users how to point lagless at it', () => {
    expect(text).toContain('LAGLESS_PRIMARY_URL=postgres://postgres:postgres@127.0.0.1:5432/app');
    expect(text).toMatch(/LAGLESS_REPLICA_URLS=\S*127\.0\.0\.1:5433\/app,\S*127\.0\.0\.1:5434\/app/);
    expect(text).toContain('LAGLESS_REDIS_URL=redis://127.0.0.1:6379');
  });
});

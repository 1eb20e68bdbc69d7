// The only reader of process.env: parses and validates every setting, reports all problems by name, freezes.
import path from 'node:path';

export type KmsConfig =
  | { provider: 'local'; keyFile: string }
  | { provider: 'aws'; keyId: string; region: string | undefined; endpoint: string | undefined };

export type DatabaseConfig =
  | { kind: 'embedded'; dataDir: string }
  | { kind: 'postgres'; url: string; poolSize: number };

export interface Config {
  env: 'development' | 'test' | 'production';
  host: string;
  port: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  dataDir: string;
  database: DatabaseConfig;
  redisUrl: string | undefined;
  kms: KmsConfig;
  policiesDir: string;
  bodyLimitBytes: number;
  /**
   * Seconds a stopping instance keeps serving, answering /readyz 503, before it closes its listener: the time load
   * balancers take to stop sending it new connections once it is going (0: close at once).
   */
  shutdownDelaySeconds: number;
  /** Express 'trust proxy': false, or the number of proxy hops in front whose X-Forwarded-For is believed. */
  trustProxy: false | number;
  /** Per-key and failed-authentication rate limits; off only for the bench, never in production. */
  rateLimits: boolean;
  apiKeyCacheSeconds: number;
  idempotencyTtlSeconds: number;
  dataKeys: { maxAgeSeconds: number; maxUses: number; cacheEntries: number };
  devCredentials: boolean;
  /** How long a CVC waits, sealed in Redis, for its one authorization. */
  cvcTtlSeconds: number;
  /** Names this log in signed checkpoints; checkpoints come at least every maxEvents or maxAgeSeconds. */
  audit: { origin: string; checkpointMaxEvents: number; checkpointMaxAgeSeconds: number };
  /** Outside production the vault migrates its own schema; in production a job does, and the vault checks. */
  migrateOnStart: boolean;
  /** How long a migration waits for a table's lock before it fails and changes nothing (0: for ever). */
  migrationLockTimeoutMs: number;
  /** `npm start`'s demo merchant checkout (src/hosted/demo.ts) on this port; undefined: off, always in production. */
  demoPort: number | undefined;
  /** GET /metrics (Prometheus) on a listener of its own, never the API's; undefined: off (METRICS_PORT=off). */
  metrics: { host: string; port: number } | undefined;
  /** allowInsecureUrls: webhook endpoints may be plain http:// (WEBHOOK_ALLOW_HTTP); never in production. */
  webhooks: { allowInsecureUrls: boolean };
  /** allowLocalHttpOrigins: a hosted-form session may list http://localhost and http://127.0.0.1; never in production. */
  clientSessions: { allowLocalHttpOrigins: boolean };
  /** The account updater (src/updater/): where its worker runs, how it reaches the networks, how it paces itself. */
  updater: {
    /** `in-process`: this process runs the worker and webhook delivery too; `off`: `cardvault worker` does. */
    worker: 'in-process' | 'off';
    network: 'simulator' | 'file-drop';
    dropDir: string;
    simulatorRules: string | undefined;
    pollSeconds: number;
    lockTtlSeconds: number;
    applyChunk: number;
    responseTimeoutHours: number;
    auditSweepSeconds: number;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Readonly<Config> {
  const problems: string[] = [];
  const read = new Reader(env, problems);

  const nodeEnv = read.oneOf('NODE_ENV', ['development', 'test', 'production'] as const, 'development');
  const dataDir = path.resolve(cwd, read.string('VAULT_DATA_DIR', '.vault'));
  const databaseUrl = read.optional('DATABASE_URL');
  const problemsBeforeKms = problems.length;
  const kmsProvider = read.oneOf('KMS_PROVIDER', ['local', 'aws'] as const, 'local');
  const kmsProviderValid = problems.length === problemsBeforeKms;
  const rateLimits = read.oneOf('RATE_LIMITS', ['on', 'off'] as const, 'on') === 'on';
  const demoPortSetting = read.optional('DEMO_PORT');
  const demoPort = demoPortSetting === 'off' ? undefined : read.integer('DEMO_PORT', 8081, 0, 65535);
  const apiPort = read.integer('PORT', 8080, 0, 65535);
  const metricsPort = read.optional('METRICS_PORT') === 'off' ? undefined : read.integer('METRICS_PORT', 9464, 0, 65535);
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === apiPort) {
    problems.push('METRICS_PORT must differ from PORT: metrics are never served on the API port');
  }
  const updaterNetwork = read.oneOf('UPDATER_NETWORK', ['simulator', 'file-drop'] as const, nodeEnv === 'production' ? 'file-drop' : 'simulator');
  const webhookAllowHttp = read.oneOf('WEBHOOK_ALLOW_HTTP', ['on', 'off'] as const, nodeEnv === 'production' ? 'off' : 'on') === 'on';

  const database: DatabaseConfig = databaseUrl
    ? { kind: 'postgres', url: databaseUrl, poolSize: read.integer('DATABASE_POOL_SIZE', 20, 1, 500) }
    : { kind: 'embedded', dataDir: path.join(dataDir, 'pgdata') };
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }

  let kms: KmsConfig;
  if (kmsProvider === 'aws') {
    const keyId = read.optional('KMS_KEY_ID');
    if (!keyId) problems.push('KMS_KEY_ID is required when KMS_PROVIDER=aws');
    kms = { provider: 'aws', keyId: keyId ?? '', region: read.optional('AWS_REGION'), endpoint: read.optional('AWS_ENDPOINT_URL_KMS') };
  } else {
    kms = { provider: 'local', keyFile: path.resolve(cwd, read.string('LOCAL_KMS_KEY_FILE', path.join(dataDir, 'local-kms.key'))) };
  }

  if (nodeEnv === 'production') {
    if (database.kind === 'embedded') {
      problems.push('DATABASE_URL must be set in production: the embedded database is for development only');
    }
    if (kms.provider === 'local' && kmsProviderValid) {
      problems.push('KMS_PROVIDER=local is not allowed in production: set KMS_PROVIDER=aws and KMS_KEY_ID');
    }
    if (demoPortSetting !== undefined && demoPortSetting !== 'off') {
      problems.push('DEMO_PORT is not allowed in production: the demo checkout uses the development credentials');
    }
    if (!rateLimits) {
      problems.push('RATE_LIMITS=off is not allowed in production: the limits bound what a stolen key or a guessed one can do');
    }
    if (updaterNetwork === 'simulator') {
      problems.push('UPDATER_NETWORK=simulator is not allowed in production: the simulator invents card updates');
    }
    if (webhookAllowHttp) {
      problems.push('WEBHOOK_ALLOW_HTTP=on is not allowed in production: webhook events and their signatures would travel unencrypted');
    }
    // GenerateDataKey and Decrypt answers carry plaintext data keys: only over TLS (a VPC endpoint is https too).
    if (kms.provider === 'aws' && kms.endpoint !== undefined && !/^https:\/\//i.test(kms.endpoint)) {
      problems.push('AWS_ENDPOINT_URL_KMS must be an https:// URL in production: the KMS answers with plaintext data keys');
    }
  }

  const config: Config = {
    env: nodeEnv,
    host: read.string('HOST', '0.0.0.0'),
    port: apiPort,
    logLevel: read.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    dataDir,
    database,
    redisUrl: read.optional('REDIS_URL'),
    kms,
    // Defaults to the policies/ shipped beside src/ and dist/, wherever the process was started from.
    policiesDir: path.resolve(cwd, read.string('POLICIES_DIR', path.resolve(__dirname, '..', 'policies'))),
    bodyLimitBytes: read.integer('BODY_LIMIT_BYTES', 16 * 1024, 1024, 1024 * 1024),
    shutdownDelaySeconds: read.integer('SHUTDOWN_DELAY_SECONDS', 0, 0, 60),
    trustProxy: read.hops('TRUST_PROXY'),
    rateLimits,
    apiKeyCacheSeconds: read.integer('API_KEY_CACHE_SECONDS', 5, 0, 300),
    idempotencyTtlSeconds: read.integer('IDEMPOTENCY_TTL_HOURS', 24, 24, 24 * 30) * 3600,
    dataKeys: {
      maxAgeSeconds: read.integer('DATA_KEY_MAX_AGE_SECONDS', 3600, 1, 86_400),
      maxUses: read.integer('DATA_KEY_MAX_USES', 1_000_000, 1, 100_000_000),
      cacheEntries: read.integer('DATA_KEY_CACHE_ENTRIES', 10_000, 1, 1_000_000),
    },
    devCredentials: nodeEnv !== 'production',
    migrateOnStart: read.boolean('MIGRATE_ON_START', nodeEnv !== 'production'),
    migrationLockTimeoutMs: read.integer('MIGRATION_LOCK_TIMEOUT_MS', 5000, 0, 600_000),
    demoPort: nodeEnv === 'production' ? undefined : demoPort,
    metrics: metricsPort === undefined ? undefined : { host: read.string('METRICS_HOST', '0.0.0.0'), port: metricsPort },
    cvcTtlSeconds: read.integer('CVC_TTL_SECONDS', 600, 60, 3600),
    audit: {
      origin: read.string('AUDIT_ORIGIN', 'cardvault'),
      checkpointMaxEvents: read.integer('CHECKPOINT_MAX_EVENTS', 10_000, 1, 10_000),
      checkpointMaxAgeSeconds: read.integer('CHECKPOINT_MAX_AGE_SECONDS', 60, 1, 60),
    },
    webhooks: { allowInsecureUrls: webhookAllowHttp },
    // A merchant's development server frames the form over plain http; a production checkout never does.
    clientSessions: { allowLocalHttpOrigins: nodeEnv !== 'production' },
    updater: {
      worker: read.oneOf('UPDATER_WORKER', ['in-process', 'off'] as const, nodeEnv === 'production' ? 'off' : 'in-process'),
      network: updaterNetwork,
      dropDir: path.resolve(cwd, read.string('UPDATER_DROP_DIR', path.join(dataDir, 'updater-drop'))),
      simulatorRules: read.optional('UPDATER_SIMULATOR_RULES') && path.resolve(cwd, read.optional('UPDATER_SIMULATOR_RULES')!),
      pollSeconds: read.integer('UPDATER_POLL_SECONDS', 10, 1, 3600),
      lockTtlSeconds: read.integer('UPDATER_LOCK_TTL_SECONDS', 60, 5, 600),
      applyChunk: read.integer('UPDATER_APPLY_CHUNK', 200, 1, 5000),
      responseTimeoutHours: read.integer('UPDATER_RESPONSE_TIMEOUT_HOURS', 72, 1, 720),
      auditSweepSeconds: read.integer('UPDATER_AUDIT_SWEEP_SECONDS', 60, 1, 3600),
    },
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}

function deepFreeze<T extends object>(value: T): Readonly<T> {
  for (const child of Object.values(value)) {
    if (child && typeof child === 'object') deepFreeze(child as object);
  }
  return Object.freeze(value);
}

class Reader {
  constructor(
    private readonly env: Env,
    private readonly problems: string[],
  ) {}

  optional(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value ? value : undefined;
  }

  string(name: string, fallback: string): string {
    return this.optional(name) ?? fallback;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.optional(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw) || value < min || value > max) {
      this.problems.push(`${name} must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const raw = this.optional(name);
    if (raw === undefined) return fallback;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    this.problems.push(`${name} must be true or false`);
    return fallback;
  }

  /** false, or a hop count: `true` would trust every X-Forwarded-For entry, which a caller can forge. */
  hops(name: string): false | number {
    const raw = this.optional(name);
    if (raw === undefined || raw === 'false' || raw === '0') return false;
    if (/^[1-9]$/.test(raw)) return Number(raw);
    this.problems.push(`${name} must be false or the number of proxy hops in front of the vault (1-9)`);
    return false;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const raw = this.optional(name);
    if (raw === undefined) return fallback;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    this.problems.push(`${name} must be one of: ${allowed.join(', ')}`);
    return fallback;
  }
}

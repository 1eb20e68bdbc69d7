// Builds every runtime dependency from the config, once; main.ts and the CLI share it, tests build their own.
import { apiKeyCodec } from './crypto/api-key';
import { openLocalKms } from './crypto/local-kms';
import { createCardCrypto } from './crypto/card-crypto';
import { FINGERPRINT_VIEW_TTL_MS, Keyring } from './crypto/keyring';
import { cryptoTokenRandomness } from './crypto/random';
import type { Config } from './config';
import { StartupError } from './errors';
import type { Policies } from './domain/policy';
import { Principals } from './domain/principals';
import { systemClock, type Kms, type TransactionalAuditTrail } from './domain/ports';
import { KEYED_BATCH_LIMITS } from './domain/tokenizer';
import { Vault } from './domain/vault';
import { AuditLog } from './audit/audit-log';
import { AuditService } from './audit/audit-service';
import { Checkpointer } from './audit/checkpointer';
import { CheckpointSigner } from './crypto/checkpoint-signer';
import { SessionTokens } from './crypto/session-signer';
import { ClientSessions } from './domain/client-sessions';
import { PgClientSessionStore } from './store/client-session-store';
import { ClientEncryptionKeys } from './crypto/client-encryption';
import { PgAuditStore } from './store/audit-store';
import { MemoryCvcStore, RedisCvcStore } from './store/cvc-store';
import { CvcHolder } from './domain/cvc';
import type { CvcStore } from './domain/ports';
import { PgSigningKeyStore } from './store/signing-key-store';
import { PgEncryptionKeyStore } from './store/encryption-key-store';
import { rateLimiters, type RateLimiters } from './http/rate-limit';
import type { ReadinessCheck } from './http/service-routes';
import type { Logger } from './log';
import { loadPolicies } from './policy/load-policies';
import { policyLoadDetails } from './policy/policy-load-details';
import { digestLegacyIdempotencyKeys, PgCardStore, purgeExpiredIdempotencyKeys } from './store/card-store';
import { openEmbedded, openPostgres, POOL_QUEUE_DEADLINE, type Db, type Queryable } from './store/db';
import { migrateUp, pendingMigrations } from './store/migrate';
import { RateLimitStore } from './store/rate-limit-store';
import { openRedis, type RedisHandle } from './store/redis';
import { PgTenantStore } from './store/tenant-store';
import { PgWebhookStore } from './store/webhook-store';
import { WebhookDeliverer } from './updater/webhooks/deliverer';
import { WebhookEndpoints } from './updater/webhooks/webhook-endpoints';
import { assembleUpdater, type UpdaterParts } from './updater/dependencies';
import { createMetrics, type VaultMetrics } from './metrics/metrics';
import { instrumentKms } from './metrics/instrumented-kms';
import { ActiveKeyKms } from './crypto/active-kms';
import { KeyRotator, type KeyRotatorDeps } from './crypto/key-rotation';
import { KMS_CALL_DEADLINE_MS } from './crypto/kms-limits';
import { PgKeyRotationStore } from './store/key-rotation-store';
import { FingerprintRotator, type FingerprintRotatorDeps } from './crypto/fingerprint-rotation';
import { PgFingerprintRotationStore } from './store/fingerprint-rotation-store';

/** How often an instance looks for a new KMS key rotation: new writes move to the new key within this time. */
export const KEY_ROTATION_POLL_MS = 5000;

/**
 * How long `cardvault keys rotate` waits after the rotation starts before re-wrapping. Every instance has polled by
 * then (twice the interval: one poll may have read just before the start, and the next be slow); a KMS call one began
 * with the old key id just before has ended, since none outlives KMS_CALL_DEADLINE_MS, retries included; and a
 * second more lets the key it made land. Keys that land later still are re-wrapped by another pass.
 */
export const KEY_ROTATION_SETTLE_MS = 2 * KEY_ROTATION_POLL_MS + KMS_CALL_DEADLINE_MS + 1000;

export interface Runtime extends VaultParts {
  /** Synchronous commits: audit log, checkpoints, signing keys, migrations, readiness. */
  db: Db;
  /** Cards, tenants, API keys and data keys: the configured pool size, synchronous commits like `db`. */
  cardDb: Db;
  /** The configured KMS behind the rotation-aware wrapper (assembleVault's `kms`). */
  kms: ActiveKeyKms;
  policies: Policies;
  redis: RedisHandle | undefined;
  /** Undefined when RATE_LIMITS=off (the bench); pass to createApp. */
  rateLimits: RateLimiters | undefined;
  readiness: ReadinessCheck;
  /** The account updater: its use cases for the API, and the worker main.ts or `cardvault worker` runs. */
  updater: UpdaterParts;
  /** The process's metrics, for createApp and the METRICS_PORT listener; undefined when METRICS_PORT=off. */
  metrics: VaultMetrics | undefined;
  /** Stops the background work (updater worker, webhook deliveries, rotation watching) and waits for its audit events. */
  quiesce(): Promise<void>;
  close(): Promise<void>;
}

export async function openDatabase(config: Config, options: { connectTimeoutMs?: number } = {}): Promise<Db> {
  return config.database.kind === 'embedded'
    ? openEmbedded({ dataDir: config.database.dataDir })
    : openPostgres({ url: config.database.url, poolSize: AUDIT_POOL_SIZE, connectTimeoutMs: options.connectTimeoutMs });
}

/** Audit batches serialize on one row, so a few connections serve them; card traffic gets the configured pool. */
const AUDIT_POOL_SIZE = 4;

/**
 * Card, key and credential writes commit synchronously, like the audit. They once committed asynchronously,
 * counting on their audit event's synchronous commit to flush their WAL too (it is flushed in order); but a
 * server that crashes and recovers between the two loses the unflushed card, and the audit commit that follows
 * on a fresh connection succeeds all the same: an acknowledged card gone. Embedded: the one PGlite database.
 */
function openCardDatabase(config: Config, db: Db): Db {
  return config.database.kind === 'embedded'
    ? db
    : openPostgres({ url: config.database.url, poolSize: config.database.poolSize, applicationName: 'cardvault-cards' });
}

export type VaultParts = ReturnType<typeof assembleVault>;

/** Wires the vault and its audit log over an open database and KMS; used by main, the CLI and the tests alike. */
export function assembleVault(options: {
  /** Synchronous commits: the audit log, checkpoints, signing keys. */
  db: Db;
  /** Cards, tenants, API keys and data keys; defaults to `db`. See openCardDatabase. */
  cardDb?: Db;
  /** Where CVCs wait; defaults to process memory with a 10-minute TTL. */
  cvc?: { store: CvcStore; ttlSeconds: number };
  kms: Kms;
  policies: Policies;
  log: Logger;
  /** `webhooks` absent: https:// endpoints only; `clientSessions` absent: https:// session origins only. */
  config: Pick<Config, 'apiKeyCacheSeconds' | 'idempotencyTtlSeconds' | 'dataKeys' | 'audit'> & Partial<Pick<Config, 'webhooks' | 'clientSessions'>>;
  /** Audit commits, data-key cache lookups and webhook deliveries are counted here; absent, nothing is. */
  metrics?: VaultMetrics;
  /** How old this instance's view of a tenant's fingerprint keys may get (default 5 s; shorter in tests). */
  fingerprintViewMs?: number;
  /**
   * The trail operator commands record to (tenants, API keys, key rotations, updater runs), given the vault's: the
   * CLI adds who ran it. Absent, the vault's.
   */
  operatorAudit?: (audit: TransactionalAuditTrail<Queryable>) => TransactionalAuditTrail<Queryable>;
}) {
  const { db, policies, config, log } = options;
  // New data keys go under the KMS key the latest rotation made active; keyRotation.sync() keeps it current.
  const kms = new ActiveKeyKms(options.kms);
  const cardDb = options.cardDb ?? db;
  const tenants = new PgTenantStore(cardDb);
  const auditStore = new PgAuditStore(db);
  const metrics = options.metrics;
  const audit = new AuditLog(auditStore, systemClock, log, metrics?.auditCommitted);
  const signer = new CheckpointSigner(kms, new PgSigningKeyStore(db), systemClock, audit);
  const clientEncryption = new ClientEncryptionKeys(kms, new PgEncryptionKeyStore(db), systemClock, audit);
  const checkpointer = new Checkpointer(
    auditStore,
    signer,
    systemClock,
    { origin: config.audit.origin, maxEvents: config.audit.checkpointMaxEvents, maxAgeMs: config.audit.checkpointMaxAgeSeconds * 1000, pollMs: 1000 },
    log,
  );
  const keyring = new Keyring(
    kms,
    tenants,
    { maxAgeMs: config.dataKeys.maxAgeSeconds * 1000, maxUses: config.dataKeys.maxUses, maxEntries: config.dataKeys.cacheEntries },
    Date.now,
    audit,
    metrics?.dataKeyLookup,
    options.fingerprintViewMs ?? FINGERPRINT_VIEW_TTL_MS,
  );
  const operatorAudit = options.operatorAudit?.(audit) ?? audit;
  const principals = new Principals({ tenants, audit: operatorAudit, kms, policies, apiKeys: apiKeyCodec, cacheMs: config.apiKeyCacheSeconds * 1000 });
  const crypto = createCardCrypto(keyring);
  const cvc = options.cvc ?? { store: new MemoryCvcStore(), ttlSeconds: 600 };
  const vault = new Vault({
    cards: new PgCardStore(cardDb, cardDb),
    audit,
    cvc: new CvcHolder(cvc.store, crypto, cvc.ttlSeconds),
    crypto,
    randomness: cryptoTokenRandomness,
    clock: systemClock,
    idempotencyTtlSeconds: config.idempotencyTtlSeconds,
    // Each keyed batch takes a pool connection for its transaction: a request waits for one no longer than for the pool.
    keyedBatch: { ...KEYED_BATCH_LIMITS, queueDeadline: POOL_QUEUE_DEADLINE },
  });
  const auditService = new AuditService(auditStore, checkpointer, signer, audit, config.audit.origin);
  // Signed by the checkpoint keys under their own typ and aud (crypto/session-signer.ts says why that is safe).
  const clientSessions = new ClientSessions({
    sessions: new PgClientSessionStore(db),
    tokens: new SessionTokens((payload, typ) => signer.sign(payload, typ), (jws) => signer.verify(jws), systemClock),
    tenants,
    audit,
    clock: systemClock,
    allowLocalHttpOrigins: config.clientSessions?.allowLocalHttpOrigins ?? false,
  });
  const webhookStore = new PgWebhookStore(db);
  const webhooks = new WebhookEndpoints({
    store: webhookStore,
    crypto,
    audit,
    options: { allowInsecureUrls: config.webhooks?.allowInsecureUrls ?? false },
  });
  // Runs beside the account-updater worker (main.ts in-process, or `cardvault worker`); claims are leased, SKIP LOCKED.
  const webhookDeliverer = new WebhookDeliverer({
    store: webhookStore,
    crypto,
    log,
    onDelivery: metrics?.webhookDelivery,
    allowInternalAddresses: config.webhooks?.allowInsecureUrls ?? false,
  });
  const keyRotationStore = new PgKeyRotationStore(db);
  const keyRotation = {
    store: keyRotationStore,
    /** How often every instance polls for a rotation (watchKeyRotations). */
    pollMs: KEY_ROTATION_POLL_MS,
    /**
     * Picks up a rotation made by `cardvault keys rotate` anywhere: the new KMS key, and fresh sealing keys. Run every
     * poll, it also drops data keys past DATA_KEY_MAX_AGE_SECONDS that nothing asked for again.
     */
    async sync(): Promise<void> {
      keyring.dropExpired();
      const latest = await keyRotationStore.latest();
      kms.setActiveKey(latest?.kmsKeyId);
      keyring.useGeneration(latest?.generation ?? 0);
    },
    /**
     * `cardvault keys rotate`. settleMs must exceed every instance's poll interval (KEY_ROTATION_POLL_MS in
     * production); onSettle is told when the command starts waiting for them, and for how long.
     */
    rotator: (
      batchSize: number,
      onProgress?: KeyRotatorDeps['onProgress'],
      settleMs = KEY_ROTATION_SETTLE_MS,
      onSettle?: KeyRotatorDeps['onSettle'],
    ) => new KeyRotator({ kms, store: keyRotationStore, crypto, audit: operatorAudit, batchSize, settleMs, onProgress, onSettle }),
  };
  const fingerprintRotationStore = new PgFingerprintRotationStore(db);
  const fingerprintRotation = {
    store: fingerprintRotationStore,
    /**
     * `cardvault keys rotate-fingerprint`. settleMs must exceed every instance's view age (FINGERPRINT_VIEW_TTL_MS in
     * production): the default waits twice that and a second more, for requests in flight across a change.
     */
    rotator: (batchSize: number, onProgress?: FingerprintRotatorDeps['onProgress'], settleMs = 2 * FINGERPRINT_VIEW_TTL_MS + 1000) =>
      new FingerprintRotator({ kms, store: fingerprintRotationStore, crypto, audit: operatorAudit, batchSize, settleMs, onProgress }),
  };
  const idempotency = {
    /** Removes records past their retention; main.ts runs it every 10 minutes. */
    purgeExpired: () => purgeExpiredIdempotencyKeys(cardDb),
    /** Re-keys unexpired records still holding a plaintext key (migrations/0013); main.ts runs it after each purge. */
    digestLegacyKeys: () =>
      digestLegacyIdempotencyKeys(cardDb, (tenantId, key, generation) => crypto.idempotencyKeyDigests(tenantId, key, [generation])),
  };
  return {
    keyring, principals, vault, tenants, audit, auditStore, signer, clientEncryption, checkpointer, auditService, clientSessions, webhooks,
    webhookDeliverer, keyRotation, fingerprintRotation, kms, idempotency,
    /** The trail operator commands record to: the vault's, with the CLI's operator added when it gave one. */
    operatorAudit,
    /** Where CVCs wait; for the account updater in the same process, whose new numbers discard them. */
    cvcStore: cvc.store,
  };
}

/**
 * Applies the latest KMS key rotation now, then checks for a newer one every 5 s, so new writes in this process
 * move to a new KMS key within that time of `cardvault keys rotate`. Returns the function that stops watching.
 */
export async function watchKeyRotations(rotation: VaultParts['keyRotation'], log: Logger): Promise<() => void> {
  await rotation.sync();
  const poll = setInterval(() => {
    rotation.sync().catch((err) => log.warn({ err }, 'could not check for a key rotation'));
  }, KEY_ROTATION_POLL_MS);
  poll.unref();
  return () => clearInterval(poll);
}

/**
 * For the API and `cardvault worker` alike: with MIGRATE_ON_START (the default outside production) applies what is
 * pending; otherwise refuses a database with migrations still to apply, naming them and the command that applies them.
 */
export async function prepareSchema(db: Db, config: Pick<Config, 'migrateOnStart' | 'migrationLockTimeoutMs'>, log: Logger): Promise<void> {
  if (config.migrateOnStart) {
    const applied = await migrateUp(db, { lockTimeoutMs: config.migrationLockTimeoutMs });
    if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied');
    return;
  }
  const pending = await pendingMigrations(db);
  if (pending.length > 0) throw new StartupError(`the database has pending migrations (${pending.join(', ')}): run \`cardvault migrate\``);
}

export async function openRuntime(config: Config, log: Logger): Promise<Runtime> {
  const policies = loadPolicies(config.policiesDir);
  log.info({ roles: [...policies.keys()] }, 'policies loaded');
  const metrics = config.metrics ? createMetrics() : undefined;
  const kms = await openKms(config, metrics);
  const db = await openDatabase(config);
  try {
    await prepareSchema(db, config, log);
  } catch (err) {
    await db.close();
    throw err;
  }
  const redis = config.redisUrl ? openRedis(config.redisUrl) : undefined;
  // Without REDIS_URL the counters live in each process: exact for a single instance, per instance for several.
  const rateLimitStore = config.rateLimits ? new RateLimitStore({ redisUrl: config.redisUrl }) : undefined;
  if (!config.rateLimits) log.warn('rate limits are off (RATE_LIMITS=off)');
  const cardDb = openCardDatabase(config, db);
  // With Redis, every instance sees the CVC; without it (the embedded default) one process holds it.
  const cvcStore = config.redisUrl ? new RedisCvcStore(config.redisUrl) : new MemoryCvcStore();
  const parts = assembleVault({ db, cardDb, kms, policies, config, log, metrics, cvc: { store: cvcStore, ttlSeconds: config.cvcTtlSeconds } });
  const stopWatchingRotations = await watchKeyRotations(parts.keyRotation, log);
  await parts.signer.ensureKey();
  await parts.clientEncryption.ensureKey();
  const updater = assembleUpdater({ db, keyring: parts.keyring, tenants: parts.tenants, audit: parts.audit, log, options: config.updater, metrics, cvcs: cvcStore });
  await parts.audit.record({ tenantId: null, principal: 'system', action: 'policy.load', outcome: 'success', details: policyLoadDetails(policies) });

  const quiesce = async () => {
    stopWatchingRotations();
    await updater.worker.stop();
    await parts.webhookDeliverer.stop();
    await parts.audit.flush();
  };
  return {
    db,
    cardDb,
    policies,
    redis,
    rateLimits: rateLimitStore && rateLimiters({ stores: rateLimitStore, log, onReject: metrics?.rateLimitRejection }),
    readiness: readinessCheck({ db, redis, rateLimitStore }),
    ...parts,
    updater,
    metrics,
    quiesce,
    async close() {
      await quiesce();
      await parts.checkpointer.stop();
      await parts.audit.flush();
      await rateLimitStore?.close();
      await redis?.close();
      await cvcStore.close();
      if (cardDb !== db) await cardDb.close();
      await db.close();
    },
  };
}

/** Ready while PostgreSQL answers; Redis and the rate-limit counters can only degrade, never stop, the vault. */
export function readinessCheck(deps: {
  db: Pick<Db, 'ping'>;
  redis: RedisHandle | undefined;
  rateLimitStore: { degraded(): boolean } | undefined;
}): ReadinessCheck {
  return async () => {
    const database = await deps.db.ping().then(
      () => 'ok' as const,
      () => 'down' as const,
    );
    const checks: Record<string, 'ok' | 'down' | 'degraded'> = { database };
    if (deps.redis) checks.redis = (await deps.redis.ping()) ? 'ok' : 'degraded';
    // Limits then hold per process, so N instances allow up to N times the budget.
    if (deps.rateLimitStore?.degraded()) checks.rate_limits = 'degraded';
    return { ready: database === 'ok', checks };
  };
}

/** The configured KMS; with `metrics`, every call is counted and timed (metrics/instrumented-kms.ts). */
export async function openKms(config: Config, metrics?: Pick<VaultMetrics, 'kmsCall'>): Promise<Kms> {
  const kms = await openProviderKms(config.kms);
  return metrics ? instrumentKms(kms, metrics) : kms;
}

async function openProviderKms(kms: Config['kms']): Promise<Kms> {
  if (kms.provider === 'aws') {
    // Loaded only when used: the SDK is large and the embedded default never needs it.
    const { createAwsKms } = await import('./crypto/aws-kms');
    return createAwsKms({ keyId: kms.keyId, region: kms.region, endpoint: kms.endpoint });
  }
  return openLocalKms({ keyFile: kms.keyFile });
}

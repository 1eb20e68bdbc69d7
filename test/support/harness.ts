// Builds the app as main.ts does, on the real test database, with a local KMS key file and a captured log.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Express } from 'express';
import { createApp, type AppDeps } from '../../src/app';
import { apiKeyCodec } from '../../src/crypto/api-key';
import { createCardCrypto } from '../../src/crypto/card-crypto';
import { openLocalKms } from '../../src/crypto/local-kms';
import { assembleVault, readinessCheck } from '../../src/dependencies';
import type { Policies } from '../../src/domain/policy';
import { Principals } from '../../src/domain/principals';
import { VaultError } from '../../src/errors';
import type { CvcStore, Kms, Tenant } from '../../src/domain/ports';
import { createLogger, type Logger } from '../../src/log';
import { loadPolicies } from '../../src/policy/load-policies';
import { openPostgres, type Db } from '../../src/store/db';
import { PgTenantStore } from '../../src/store/tenant-store';
import { REPO_ROOT, RUN_DIR, TEST_DATABASE_URL } from './env';
import fs from 'node:fs';
import os from 'node:os';
import { assembleUpdater, type UpdaterOptions, type UpdaterParts } from '../../src/updater/dependencies';
import { captureLog, type CapturedLog } from './log-capture';

export interface Harness {
  app: Express;
  /** Another app over the same vault, with some of createApp's dependencies replaced or added (the hosted page). */
  appWith(extra: Partial<AppDeps>): Express;
  db: Db;
  kms: Kms;
  log: Logger;
  captured: CapturedLog;
  parts: ReturnType<typeof assembleVault>;
  /** The account updater over this harness's database, answered by the simulator unless the options said file-drop. */
  updater: UpdaterParts;
  /** Its file-drop folders: a temporary directory outside .test-run (batch files hold card numbers). */
  updaterDropDir: string;
  /** Another updater (a second worker) over the same database and drop folders. */
  newUpdater(): UpdaterParts;
  /** A new tenant with one API key per requested role. */
  tenant(roles?: string[]): Promise<{ tenant: Tenant; keys: Record<string, string> }>;
  /**
   * The stored records of an Idempotency-Key, found as the vault finds them: by its digests under the tenant's
   * fingerprint-key generations now written, or under those given.
   */
  idempotencyRecords(tenantId: string, key: string, generations?: number[]): Promise<IdempotencyRow[]>;
  close(): Promise<void>;
}

export interface IdempotencyRow {
  key: string | null;
  key_digest_odd: string | null;
  key_digest_even: string | null;
  digest_generation: number;
  hours: number;
}

// One key file for the whole run, as every vault instance shares one KMS key: signing keys are global to
// the database, so a worker must be able to unwrap what another created. Global setup empties the folder.
export const sharedKeyFile = path.join(RUN_DIR, 'kms', 'local-kms.key');

/** The origin test vaults sign checkpoints for. */
export const AUDIT_ORIGIN = 'cardvault-test';

export interface HarnessOptions {
  kms?: Kms;
  db?: Db;
  apiKeyCacheSeconds?: number;
  /** Roles other than the shipped policies/. */
  policies?: Policies;
  /** Passed to createApp; absent, nothing is rate limited. */
  rateLimits?: AppDeps['rateLimits'];
  /** The store behind rateLimits, so /readyz reports it as the vault does. */
  rateLimitStore?: { degraded(): boolean };
  trustProxy?: false | number;
  /** Where CVCs wait (default: process memory, 10 minutes). */
  cvc?: { store: CvcStore; ttlSeconds: number };
  /** Off for a harness whose database is meant to be unreachable. */
  ensureSigningKey?: boolean;
  /** Account-updater settings over the test defaults (simulator, chunks of 50). */
  updater?: Partial<UpdaterOptions>;
  /** How old this instance's view of a tenant's fingerprint keys may get (default: the production 5 s). */
  fingerprintViewMs?: number;
}

export async function buildHarness(options: HarnessOptions = {}): Promise<Harness> {
  const db = options.db ?? openPostgres({ url: TEST_DATABASE_URL, poolSize: 10 });
  const kms = options.kms ?? (await openLocalKms({ keyFile: sharedKeyFile }));
  const policies = options.policies ?? loadPolicies(path.join(REPO_ROOT, 'policies'));
  const captured = captureLog();
  const log = createLogger({ level: 'info', destination: captured });
  const parts = assembleVault({
    db,
    kms,
    policies,
    log,
    cvc: options.cvc,
    fingerprintViewMs: options.fingerprintViewMs,
    config: {
      apiKeyCacheSeconds: options.apiKeyCacheSeconds ?? 0,
      idempotencyTtlSeconds: 24 * 3600,
      dataKeys: { maxAgeSeconds: 3600, maxUses: 1_000_000, cacheEntries: 1000 },
      audit: { origin: AUDIT_ORIGIN, checkpointMaxEvents: 10_000, checkpointMaxAgeSeconds: 60 },
      // Tests run their webhook receivers on http://127.0.0.1.
      webhooks: { allowInsecureUrls: true },
      // As outside production: the browser tests' demo checkout frames the form from http://localhost.
      clientSessions: { allowLocalHttpOrigins: true },
    },
  });
  if (options.ensureSigningKey !== false) {
    await parts.signer.ensureKey();
    await parts.clientEncryption.ensureKey();
  }
  const updaterDropDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-drop-'));
  const updaterOptions: UpdaterOptions = {
    network: 'simulator',
    dropDir: updaterDropDir,
    pollSeconds: 1,
    lockTtlSeconds: 30,
    applyChunk: 50,
    responseTimeoutHours: 72,
    // Long enough that no sweep audits another test file's change while its own worker is still auditing it.
    auditSweepSeconds: 60,
    ...options.updater,
  };
  const newUpdater = () => assembleUpdater({ db, keyring: parts.keyring, tenants: parts.tenants, audit: parts.audit, log, options: updaterOptions, cvcs: parts.cvcStore });
  const updater = newUpdater();
  const appWith = (extra: Partial<AppDeps>) =>
    createApp({
      vault: parts.vault,
      principals: parts.principals,
      clientSessions: parts.clientSessions,
      audit: parts.audit,
      auditService: parts.auditService,
      clientEncryption: parts.clientEncryption,
      log,
      readiness: readinessCheck({ db, redis: undefined, rateLimitStore: options.rateLimitStore }),
      bodyLimitBytes: 16 * 1024,
      trustProxy: options.trustProxy ?? false,
      rateLimits: options.rateLimits,
      webhooks: parts.webhooks,
      updater: updater.updater,
      ...extra,
    });
  const app = appWith({});
  return {
    app,
    appWith,
    updater,
    updaterDropDir,
    newUpdater,
    db,
    kms,
    log,
    captured,
    parts,
    async tenant(roles = ['merchant', 'payments', 'auditor', 'admin']) {
      const tenant = await parts.principals.createTenant(`t-${letters(16)}`, 'test');
      const keys: Record<string, string> = {};
      for (const role of roles) keys[role] = (await parts.principals.issueApiKey(tenant.id, role, 'test')).secret.reveal();
      return { tenant, keys };
    },
    async idempotencyRecords(tenantId, key, generations) {
      const digests = await createCardCrypto(parts.keyring).idempotencyKeyDigests(tenantId, key, generations);
      return db.query<IdempotencyRow>(
        `SELECT key, key_digest_odd, key_digest_even, digest_generation, extract(epoch FROM expires_at - created_at) / 3600 AS hours
           FROM idempotency_keys WHERE tenant_id = $1 AND (key_digest_odd = $2 OR key_digest_even = $3) ORDER BY created_at`,
        [tenantId, digests.odd, digests.even],
      );
    },
    async close() {
      await updater.worker.stop();
      fs.rmSync(updaterDropDir, { recursive: true, force: true });
      await parts.audit.flush();
      if (!options.db) await db.close();
    },
  };
}

export function tenantStore(db: Db): PgTenantStore {
  return new PgTenantStore(db);
}

/**
 * Principals over the harness's tenants whose audit trail is down: a tenant it creates commits and its event
 * does not, as a process dying between the two would leave it.
 */
export function principalsWithAuditDown(h: Harness): Principals {
  return new Principals({
    tenants: h.parts.tenants,
    audit: { record: () => Promise.reject(new VaultError('audit_unavailable')) },
    kms: h.kms,
    policies: loadPolicies(path.join(REPO_ROOT, 'policies')),
    apiKeys: apiKeyCodec,
    cacheMs: 0,
  });
}

/** Random lowercase letters: tenant names must not hold digit runs that could read as a card number. */
function letters(count: number): string {
  return Array.from(randomBytes(count), (b) => String.fromCharCode(97 + (b % 26))).join('');
}

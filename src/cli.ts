#!/usr/bin/env node
// The `cardvault` operator command: migrations, tenants and API keys, and serving; same config as the server.
import os from 'node:os';
import { parseArgs } from 'node:util';
import { verifyCommand } from './audit/verify-command';
import { ConfigError, loadConfig, type Config } from './config';
import { assembleVault, openDatabase, openKms, prepareSchema, watchKeyRotations } from './dependencies';
import { createLogger } from './log';
import { mayHoldCardNumberAcrossPunctuation } from './domain/pan';
import type { AuditInput, TransactionalAuditTrail } from './domain/ports';
import { loadPolicies } from './policy/load-policies';
import pino from 'pino';
import { migrateDown, migrateUp } from './store/migrate';
import type { Db, Queryable } from './store/db';
import { RedisCvcStore } from './store/cvc-store';
import { assembleUpdater } from './updater/dependencies';
import { runOnce, runStatus, runWorker } from './updater/updater-command';
import { ProgressBar } from './updater/progress-bar';
import { addLocalKmsKey } from './crypto/local-kms';
import { RetireBlockedError } from './crypto/fingerprint-rotation';
import { RewrapIncompleteError } from './crypto/key-rotation';
import { exitLoggedOnCrash, startMetrics, WEBHOOK_DELIVERY_INTERVAL_MS } from './main';
import { createMetrics } from './metrics/metrics';
import { isUuid } from './domain/uuid';

const USAGE = `usage: cardvault <command>

  serve                                   run the vault (as npm start)
  worker                                  run the account-updater worker and webhook delivery until
                                          SIGTERM (production runs it apart from the API: UPDATER_WORKER=off)
  updater run --tenant NAME [--scope due|all] [--wait]
                                          run the tenant's account updater now, with a progress bar; --wait
                                          also waits for the networks' answers (file drop)
  updater status RUN_ID --tenant NAME     print a run: state, progress and counts
  migrate [--down [--to NAME | --all]]    apply pending migrations; --down reverts the last one,
                                          --to NAME those after NAME, --all every one
  tenants create NAME                     create a tenant (its fingerprint key is wrapped by the KMS)
  keys create --tenant NAME --role ROLE [--label TEXT]
                                          issue an API key; the secret is printed once
  keys list --tenant NAME                 list a tenant's keys (ids, roles, state; never secrets)
  keys revoke KEY_ID                      revoke a key (other instances drop it within API_KEY_CACHE_SECONDS)
  keys rotate [--kms-key-id ID] [--reencrypt-cards] [--batch-size N]
                                          rotate the KMS key: new data keys under ID (every instance within
                                          5 s; the command waits 18 s for them), every wrapped key re-wrapped
                                          with ReEncrypt, and with
                                          --reencrypt-cards every card and webhook secret sealed again under
                                          a new data key.
                                          Resumable: run it again to finish an interrupted rotation. Local key
                                          file: without --kms-key-id a new key is added to the file
  keys rotate --abort                     abort the rotation in progress while it has re-wrapped nothing: new
                                          keys go back under the previous KMS key (waits 18 s for every
                                          instance); says how many keys still need the aborted one
  keys rotate-fingerprint (--tenant NAME_OR_ID | --all-tenants) [--batch-size N]
                                          replace the tenant's fingerprint (HMAC) key: new key written beside
                                          the old, every card backfilled, lookups switched, old fingerprints
                                          cleared and the old key destroyed; waits ~11 s after each step so
                                          every instance follows. Tokens never change; the fingerprint in
                                          responses does. Resumable; exits 75 while idempotency records keyed
                                          by the old key are unexpired (run it again after the time printed)
  audit verify EXPORT --jwks FILE_OR_URL  check an audit export offline; exit 0 only if every check holds
  encryption-key rotate [--overlap-hours H]
                                          new client-side encryption key: published now, offered to clients
                                          first after H hours (default 24); older keys still decrypt
  encryption-key retire KID               stop decrypting with a key (once clients have moved off it)
  audit rotate-key [--overlap-hours H]    new checkpoint signing key: published now, signing after H hours
                                          (default 24), so verifiers fetch it first; old keys stay published

tenants create, keys create|revoke|rotate|rotate-fingerprint and updater run take --operator NAME: who runs the
command, named in its audit events (default: the OS account, and the account sudo was run from).

Settings come from the environment, as for the server (see README). With the embedded
database, stop the server first: PGlite allows one process at a time.`;

class UsageError extends Error {}

/** node:util parseArgs refusing an option or a positional: the operator's usage error, as a UsageError is. */
const isParseArgsError = (err: unknown) => /^ERR_PARSE_ARGS_/.test(String((err as { code?: unknown } | null)?.code));

type Out = (line: string) => void;

export async function run(argv: string[], env = process.env, out: Out = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const [command, sub, ...rest] = argv;
  try {
    if (command === 'serve') {
      // Not quoted back: a stray argument could be a card number.
      if (argv.length > 1) throw new UsageError('serve takes no arguments (settings come from the environment)');
      await import('./main').then((m) => m.main());
      return 0;
    }
    if (command === 'audit' && sub === 'verify') return await auditVerify(rest, out);
    const config = loadConfig(env);
    if (command === 'migrate') return await withDb(config, (db) => migrate(db, [sub, ...rest].filter(Boolean) as string[], out, config.migrationLockTimeoutMs));
    if (command === 'tenants' && sub === 'create') return await tenants(config, rest, env, out);
    if (command === 'keys' && (sub === 'create' || sub === 'list' || sub === 'revoke')) return await keys(config, sub, rest, env, out);
    if (command === 'keys' && sub === 'rotate') return await rotateKeys(config, rest, env, out);
    if (command === 'keys' && sub === 'rotate-fingerprint') return await rotateFingerprintKeys(config, rest, env, out);
    if (command === 'audit' && sub === 'rotate-key') return await rotateSigningKey(config, rest, out);
    if (command === 'encryption-key' && sub === 'rotate') return await rotateEncryptionKey(config, rest, out);
    if (command === 'encryption-key' && sub === 'retire') return await retireEncryptionKey(config, rest, out);
    if (command === 'worker') return await worker(config, [sub, ...rest].filter(Boolean) as string[]);
    if (command === 'updater' && (sub === 'run' || sub === 'status')) return await updater(config, sub, rest, env, out);
    throw new UsageError(command ? `unknown command: ${[command, sub].filter(Boolean).join(' ')}` : 'no command given');
  } catch (err) {
    if (err instanceof UsageError || isParseArgsError(err)) {
      // parseArgs quotes what it refused: never repeat it if it could be a card number.
      const message = (err as Error).message;
      process.stderr.write(`cardvault: ${mayHoldCardNumberAcrossPunctuation(message) ? 'an option or argument was not understood' : message}\n\n${USAGE}\n`);
      return 64;
    }
    // Messages can quote the operator's input (a tenant name, a file name): never one that could hold a card.
    const message = err instanceof ConfigError || err instanceof Error ? err.message : 'unknown error';
    process.stderr.write(`cardvault: ${mayHoldCardNumberAcrossPunctuation(message) ? 'the command failed (its message is not shown: it could hold a card number)' : message}\n`);
    return 1;
  }
}

/** At most 64 characters, none of them a control or format character (a newline, a bidi override). */
const PRINTABLE = /^[^\p{C}]{1,64}$/u;

const validOperator = (name: string) => PRINTABLE.test(name) && name.trim() === name && !mayHoldCardNumberAcrossPunctuation(name);

/**
 * Who runs the command, for its audit events beside principal `cli` (PCI DSS 10.2.1.2 and 10.2.2 ask for the
 * individual): --operator NAME, else the OS account and, under sudo, the account sudo was run from. A bad
 * --operator is a usage error; the OS account never fails a command: one that cannot be read or used is `unknown`.
 */
function operatorOf(option: string | undefined, env: NodeJS.ProcessEnv): string {
  if (option !== undefined) {
    // Not quoted back: it is refused for what it might hold.
    if (!validOperator(option)) throw new UsageError('--operator takes a name of up to 64 printable characters with no 12-digit run');
    return option;
  }
  let account: string;
  try {
    account = os.userInfo().username;
  } catch {
    return 'unknown';
  }
  const name = env.SUDO_USER ? `${env.SUDO_USER} via sudo as ${account}` : account;
  return validOperator(name) ? name : 'unknown';
}

/** Who ran a command, for its audit events: principal `cli`, and the individual in `details.operator`. */
interface OperatorActor {
  principal: 'cli';
  operator: string;
}

const cliActor = (option: string | undefined, env: NodeJS.ProcessEnv): OperatorActor => ({ principal: 'cli', operator: operatorOf(option, env) });

/** The trail with the operator added to each event recorded as `cli`, in a transaction or not. */
function withOperator(audit: TransactionalAuditTrail<Queryable>, actor: OperatorActor): TransactionalAuditTrail<Queryable> {
  const named = (event: AuditInput): AuditInput =>
    event.principal === actor.principal ? { ...event, details: { ...event.details, operator: actor.operator } } : event;
  return {
    record: (event) => audit.record(named(event)),
    recordWithin: (tx, events) => audit.recordWithin(tx, events.map(named)),
  };
}

async function auditVerify(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { jwks: { type: 'string' } } });
  if (positionals.length !== 1 || !values.jwks) throw new UsageError('audit verify takes one EXPORT file and --jwks FILE_OR_URL');
  return verifyCommand(positionals[0]!, values.jwks, out);
}

function overlapHours(args: string[]): number {
  const { values } = parseArgs({ args, strict: true, options: { 'overlap-hours': { type: 'string' } } });
  const hours = Number(values['overlap-hours'] ?? '24');
  if (!Number.isFinite(hours) || hours < 0 || hours > 24 * 30) throw new UsageError('--overlap-hours takes 0 to 720');
  return hours;
}

async function rotateEncryptionKey(config: Config, args: string[], out: Out): Promise<number> {
  const hours = overlapHours(args);
  return withDb(config, async (db) => {
    const { clientEncryption } = await openVault(config, db);
    const kid = await clientEncryption.createKey(hours * 3600 * 1000);
    out(JSON.stringify({ kid, offered_after_hours: hours }));
    return 0;
  });
}

async function retireEncryptionKey(config: Config, args: string[], out: Out): Promise<number> {
  // A kid is base64url, so one in 64 begins with '-'. The command has no options: its one argument is the kid,
  // whether or not it follows '--'.
  const positionals = args[0] === '--' ? args.slice(1) : args;
  if (positionals.length !== 1) throw new UsageError('encryption-key retire takes one KID');
  return withDb(config, async (db) => {
    const { clientEncryption } = await openVault(config, db);
    await clientEncryption.retireKey(positionals[0]!);
    out(JSON.stringify({ kid: positionals[0], retired: true }));
    return 0;
  });
}

async function rotateSigningKey(config: Config, args: string[], out: Out): Promise<number> {
  const hours = overlapHours(args);
  return withDb(config, async (db) => {
    const { signer } = await openVault(config, db);
    const kid = await signer.createKey(hours * 3600 * 1000);
    out(JSON.stringify({ kid, signs_after_hours: hours }));
    return 0;
  });
}

/**
 * Operator commands and the worker wait up to 10 s for a connection: nobody is waiting on a request, and a
 * busy database server should slow an operator command down, not fail it.
 */
const CLI_CONNECT_TIMEOUT_MS = 10_000;

async function withDb(config: Config, work: (db: Db) => Promise<number>): Promise<number> {
  const db = await openDatabase(config, { connectTimeoutMs: CLI_CONNECT_TIMEOUT_MS });
  try {
    return await work(db);
  } finally {
    await db.close();
  }
}

async function migrate(db: Db, args: string[], out: Out, lockTimeoutMs: number): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { down: { type: 'boolean' }, to: { type: 'string' }, all: { type: 'boolean' } },
    strict: true,
  });
  if (!values.down && (values.to || values.all)) throw new UsageError('--to and --all go with --down');
  // Reverting drops tables (data_keys holds every wrapped key): one step unless the operator says more.
  const down = values.all ? {} : values.to ? { to: values.to } : { steps: 1 };
  const names = values.down ? await migrateDown(db, { ...down, lockTimeoutMs }) : await migrateUp(db, { lockTimeoutMs });
  out(JSON.stringify({ [values.down ? 'reverted' : 'applied']: names }));
  return 0;
}

/** `actor`: who runs the command, added to the events of its tenants, API keys, key rotations and updater runs. */
async function openVault(config: Config, db: Db, actor?: OperatorActor) {
  const policies = loadPolicies(config.policiesDir);
  const kms = await openKms(config);
  // Operator commands log warnings only, to stderr; their stdout is the command's JSON output.
  const log = createLogger({ level: 'warn', destination: pino.destination(2) });
  const operatorAudit = actor && ((audit: TransactionalAuditTrail<Queryable>) => withOperator(audit, actor));
  const parts = assembleVault({ db, kms, policies, config, log, operatorAudit });
  // Keys a command creates (a tenant's fingerprint key, a signing key) go under the KMS key of the latest rotation.
  await parts.keyRotation.sync();
  return { ...parts, log };
}

/**
 * The API's CVCs, where a new card number must discard them: shared only through Redis. Without REDIS_URL each
 * API process keeps its own in memory, out of this process's reach (they expire within CVC_TTL_SECONDS).
 */
function sharedCvcStore(config: Config): RedisCvcStore | undefined {
  return config.redisUrl ? new RedisCvcStore(config.redisUrl) : undefined;
}

function openUpdater(config: Config, db: Db, vault: Awaited<ReturnType<typeof openVault>>, cvcs: RedisCvcStore | undefined) {
  return assembleUpdater({ db, keyring: vault.keyring, tenants: vault.tenants, audit: vault.audit, log: vault.log, options: config.updater, cvcs });
}

async function worker(config: Config, args: string[]): Promise<number> {
  if (args.length > 0) throw new UsageError('worker takes no arguments');
  return withDb(config, async (db) => {
    // As openVault and openUpdater, with the worker's own metrics wired in: its KMS calls, audit commits, updater
    // outcomes and webhook deliveries are scraped from METRICS_PORT here, as the API's are from the server.
    const destination = pino.destination({ dest: 1, sync: false });
    const log = createLogger({ level: config.logLevel, destination });
    // A long-running process like the API: what nothing caught is logged scrubbed, and the worker exits 1.
    exitLoggedOnCrash(log, destination);
    // As the API: migrated on start where that is on, else a database not yet migrated is named as such, not as a
    // missing relation on the first tick.
    await prepareSchema(db, config, log);
    const metrics = config.metrics ? createMetrics() : undefined;
    const kms = await openKms(config, metrics);
    const vault = assembleVault({ db, kms, policies: loadPolicies(config.policiesDir), config, log, metrics });
    const cvcs = sharedCvcStore(config);
    const parts = assembleUpdater({ db, keyring: vault.keyring, tenants: vault.tenants, audit: vault.audit, log, options: config.updater, metrics, cvcs });
    const stopWatchingRotations = await watchKeyRotations(vault.keyRotation, log);
    const metricsServer = await startMetrics(config, log, metrics);
    vault.webhookDeliverer.start(WEBHOOK_DELIVERY_INTERVAL_MS);
    try {
      await runWorker(parts.worker, log);
    } finally {
      stopWatchingRotations();
      await vault.webhookDeliverer.stop();
      await vault.audit.flush();
      await metricsServer?.stop();
      await cvcs?.close();
    }
    return 0;
  });
}

async function updater(config: Config, sub: 'run' | 'status', args: string[], env: NodeJS.ProcessEnv, out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { tenant: { type: 'string' }, scope: { type: 'string' }, wait: { type: 'boolean' }, operator: { type: 'string' } },
  });
  if (!values.tenant) throw new UsageError(`updater ${sub} needs --tenant NAME`);
  const scope = values.scope ?? 'due';
  if (scope !== 'due' && scope !== 'all') throw new UsageError('--scope takes due or all');
  if (sub === 'status' && positionals.length !== 1) throw new UsageError('updater status takes one RUN_ID');
  // Not quoted back: a stray argument could be a card number.
  if (sub === 'run' && positionals.length > 0) throw new UsageError('updater run takes no argument besides its options');
  const actor = cliActor(values.operator, env);
  return withDb(config, async (db) => {
    const vault = await openVault(config, db, actor);
    const tenant = await vault.tenants.findTenantByName(values.tenant!);
    if (!tenant) throw new Error(`no tenant named ${values.tenant}`);
    const cvcs = sub === 'run' ? sharedCvcStore(config) : undefined;
    const parts = openUpdater(config, db, vault, cvcs);
    try {
      if (sub === 'status') return await runStatus(parts.store, tenant.id, positionals[0]!, out);
      return await runOnce({ ...parts, audit: vault.operatorAudit }, tenant, { scope, wait: values.wait ?? false }, out, process.stderr);
    } finally {
      await vault.audit.flush();
      await cvcs?.close();
    }
  });
}

/** EX_TEMPFAIL: the rotation cannot finish now (idempotency records to expire, an instance lagging); the same command finishes it later. */
const EXIT_TRY_LATER = 75;

async function rotateKeys(config: Config, args: string[], env: NodeJS.ProcessEnv, out: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      'kms-key-id': { type: 'string' }, 'reencrypt-cards': { type: 'boolean' }, 'batch-size': { type: 'string' }, abort: { type: 'boolean' },
      operator: { type: 'string' },
    },
  });
  const batchSize = Number(values['batch-size'] ?? '200');
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new UsageError('--batch-size takes 1 to 10000');
  if (values.abort && (values['kms-key-id'] !== undefined || values['reencrypt-cards'])) {
    throw new UsageError('keys rotate --abort takes no --kms-key-id or --reencrypt-cards');
  }
  const actor = cliActor(values.operator, env);
  return withDb(config, async (db) => {
    const vault = await openVault(config, db, actor);
    if (values.abort) return abortRotation(vault, out);
    const open = await vault.keyRotation.store.latest();
    let keyId = values['kms-key-id'] ?? (open && open.state !== 'completed' ? open.kmsKeyId : undefined);
    if (!keyId && config.kms.provider === 'aws') throw new UsageError('keys rotate needs --kms-key-id with KMS_PROVIDER=aws');
    keyId ??= await addLocalKmsKey((config.kms as { keyFile: string }).keyFile);
    const bars = { rewrap: new ProgressBar(process.stderr, 're-wrap keys'), reencrypt: new ProgressBar(process.stderr, 're-seal cards') };
    // settleMs undefined: the production wait (KEY_ROTATION_SETTLE_MS), which this line tells the operator about.
    const rotator = vault.keyRotation.rotator(batchSize, ({ phase, done, total }) => bars[phase].update(done, total), undefined, (waitMs) =>
      process.stderr.write(
        `cardvault: waiting ${Math.ceil(waitMs / 1000)} s before re-wrapping: every vault instance checks for the rotation ` +
          `every ${vault.keyRotation.pollMs / 1000} s and may write keys under the old KMS key until it has (and its KMS calls begun before have ended)\n`,
      ),
    );
    try {
      const done = await rotator.rotate(keyId, { reencryptCards: values['reencrypt-cards'] ?? false }, () => vault.keyRotation.sync());
      bars.rewrap.finish();
      bars.reencrypt.finish();
      out(JSON.stringify({ generation: done.generation, kms_key_id: done.kmsKeyId, state: done.state, rewrapped: done.rewrapped, reencrypted: done.reencrypted }));
      return 0;
    } catch (err) {
      if (!(err instanceof RewrapIncompleteError)) throw err;
      bars.rewrap.finish();
      process.stderr.write(`cardvault: ${err.message}\n`);
      return EXIT_TRY_LATER;
    } finally {
      await vault.audit.flush();
    }
  });
}

/** keys rotate --abort: new keys go back under the previous KMS key; says what the aborted key still wraps. */
async function abortRotation(vault: Awaited<ReturnType<typeof openVault>>, out: Out): Promise<number> {
  const rotator = vault.keyRotation.rotator(1, undefined, undefined, (waitMs) =>
    process.stderr.write(
      `cardvault: waiting ${Math.ceil(waitMs / 1000)} s: every vault instance checks for the change every ` +
        `${vault.keyRotation.pollMs / 1000} s and may write keys under the aborted KMS key until it has\n`,
    ),
  );
  try {
    const { rotation, writtenUnderAborted } = await rotator.abort(() => vault.keyRotation.sync());
    if (writtenUnderAborted > 0) {
      process.stderr.write(
        `cardvault: ${writtenUnderAborted} wrapped keys were written under the aborted KMS key meanwhile and open only with it: ` +
          'keep it enabled until the next keys rotate has re-wrapped them\n',
      );
    }
    out(JSON.stringify({ generation: rotation.generation, kms_key_id: rotation.kmsKeyId, state: rotation.state, written_under_aborted_key: writtenUnderAborted }));
    return 0;
  } finally {
    await vault.audit.flush();
  }
}

async function rotateFingerprintKeys(config: Config, args: string[], env: NodeJS.ProcessEnv, out: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { tenant: { type: 'string' }, 'all-tenants': { type: 'boolean' }, 'batch-size': { type: 'string' }, operator: { type: 'string' } },
  });
  if (Boolean(values.tenant) === Boolean(values['all-tenants'])) throw new UsageError('keys rotate-fingerprint needs --tenant NAME_OR_ID or --all-tenants');
  const batchSize = Number(values['batch-size'] ?? '200');
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new UsageError('--batch-size takes 1 to 10000');
  const actor = cliActor(values.operator, env);
  return withDb(config, async (db) => {
    const vault = await openVault(config, db, actor);
    const store = vault.fingerprintRotation.store;
    let tenantIds: string[];
    if (values.tenant) {
      const tenant = (await vault.tenants.findTenantByName(values.tenant)) ?? (await vault.tenants.findTenantById(values.tenant));
      if (!tenant) throw new Error(`no tenant named ${values.tenant}`);
      tenantIds = [tenant.id];
    } else {
      tenantIds = await store.tenantIds();
    }
    let blocked = 0;
    try {
      // One tenant after another: each waits out its own state changes (about 35 s plus the backfill).
      for (const tenantId of tenantIds) {
        const bars = { backfill: new ProgressBar(process.stderr, 'fingerprint cards'), clear: new ProgressBar(process.stderr, 'clear old fingerprints') };
        const rotator = vault.fingerprintRotation.rotator(batchSize, ({ phase, done, total }) => bars[phase].update(done, total));
        try {
          const done = await rotator.rotate(tenantId);
          bars.backfill.finish();
          bars.clear.finish();
          out(JSON.stringify({ tenant: tenantId, generation: done.generation, state: 'completed', backfilled: done.backfilled, cleared: done.cleared }));
        } catch (err) {
          if (!(err instanceof RetireBlockedError)) throw err;
          blocked += 1;
          out(JSON.stringify({ tenant: tenantId, state: 'waiting_for_idempotency_records', records: err.records, retry_after: err.lastExpiresAt.toISOString() }));
          process.stderr.write(`cardvault: ${err.message}\n`);
        }
      }
      return blocked > 0 ? EXIT_TRY_LATER : 0;
    } finally {
      await vault.audit.flush();
    }
  });
}

async function tenants(config: Config, args: string[], env: NodeJS.ProcessEnv, out: Out): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { operator: { type: 'string' } } });
  if (positionals.length !== 1) throw new UsageError('tenants create takes one NAME');
  const actor = cliActor(values.operator, env);
  return withDb(config, async (db) => {
    const { principals } = await openVault(config, db, actor);
    const tenant = await principals.createTenant(positionals[0]!, actor.principal);
    out(JSON.stringify({ id: tenant.id, name: tenant.name, created_at: tenant.createdAt.toISOString() }));
    return 0;
  });
}

async function keys(config: Config, sub: 'create' | 'list' | 'revoke', args: string[], env: NodeJS.ProcessEnv, out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { tenant: { type: 'string' }, role: { type: 'string' }, label: { type: 'string' }, operator: { type: 'string' } },
  });
  // Not quoted back: a stray argument could be a card number.
  if (sub !== 'revoke' && positionals.length > 0) throw new UsageError(`keys ${sub} takes no argument besides its options`);
  const actor = cliActor(values.operator, env);
  return withDb(config, async (db) => {
    const { principals, tenants: store } = await openVault(config, db, actor);
    if (sub === 'revoke') {
      if (positionals.length !== 1) throw new UsageError('keys revoke takes one KEY_ID');
      // Key ids are UUIDs; anything else is refused before it is looked up or printed back.
      if (!isUuid(positionals[0]!)) throw new UsageError('keys revoke takes a KEY_ID as keys list prints it (a UUID)');
      const revoked = await principals.revokeApiKey(positionals[0]!, actor.principal);
      out(JSON.stringify({ id: positionals[0], revoked }));
      return revoked ? 0 : 1;
    }
    if (!values.tenant) throw new UsageError(`keys ${sub} needs --tenant NAME`);
    const tenant = await store.findTenantByName(values.tenant);
    if (!tenant) throw new Error(`no tenant named ${values.tenant}`);
    if (sub === 'list') {
      for (const key of await store.listApiKeys(tenant.id)) {
        out(JSON.stringify({ id: key.id, role: key.role, label: key.label, created_at: key.createdAt, revoked_at: key.revokedAt }));
      }
      return 0;
    }
    if (!values.role) throw new UsageError('keys create needs --role ROLE');
    const { key, secret } = await principals.issueApiKey(tenant.id, values.role, actor.principal, values.label ?? null);
    out(JSON.stringify({ id: key.id, tenant: tenant.name, role: key.role, api_key: secret.reveal() }));
    process.stderr.write('cardvault: store this API key now; the vault keeps only its hash and cannot show it again\n');
    return 0;
  });
}

export { USAGE };

if (require.main === module) {
  run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}

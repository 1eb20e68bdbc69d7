// config → dependencies → app → listen → graceful shutdown.
import type { Server } from 'node:http';
import pino from 'pino';
import { createApp } from './app';
import { createDevCredentials } from './bootstrap';
import { ConfigError, loadConfig, type Config } from './config';
import { StartupError } from './errors';
import { openRuntime, type Runtime } from './dependencies';
import { createHttpServer } from './http/server';
import { createLogger, type Logger } from './log';
import { PolicyError } from './policy/load-policies';
import { loadHostedAssets } from './hosted/assets';
import { demoMerchantKey, startDemo } from './hosted/demo';
import { assembleHosted } from './hosted/dependencies';
import { serveMetrics, type MetricsServer } from './metrics/metrics-server';
import type { VaultMetrics } from './metrics/metrics';

const PURGE_INTERVAL_MS = 10 * 60 * 1000;
const SHUTDOWN_GRACE_MS = 10_000;
/** How long a dying process waits for its last log line to be written; a stdout that never drains cannot hold it. */
const LAST_LINE_MS = 2_000;
export const WEBHOOK_DELIVERY_INTERVAL_MS = 5_000;

export interface RunningVault {
  server: Server;
  /** GET /metrics on METRICS_PORT; undefined when off or when the port could not be bound. */
  metricsServer: MetricsServer | undefined;
  stop: () => Promise<void>;
}

export async function startVault(config: Config, log: Logger): Promise<RunningVault> {
  const runtime = await openRuntime(config, log);
  try {
    return await serve(config, log, runtime);
  } catch (err) {
    await runtime.close().catch(() => undefined);
    throw err;
  }
}

async function serve(config: Config, log: Logger, runtime: Runtime): Promise<RunningVault> {
  if (config.devCredentials) {
    await createDevCredentials({ dataDir: config.dataDir, db: runtime.db, principals: runtime.principals, tenants: runtime.tenants, policies: runtime.policies, log });
  }
  let draining = false;
  const app = createApp({
    draining: () => draining,
    vault: runtime.vault,
    principals: runtime.principals,
    clientSessions: runtime.clientSessions,
    audit: runtime.audit,
    auditService: runtime.auditService,
    clientEncryption: runtime.clientEncryption,
    log,
    // A stopping instance is not ready, whatever its dependencies say: load balancers move its traffic elsewhere.
    readiness: async () => (draining ? { ready: false, checks: { stopping: 'down' } } : runtime.readiness()),
    bodyLimitBytes: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    rateLimits: runtime.rateLimits,
    hostedPage: assembleHosted({ db: runtime.db, signer: runtime.signer }),
    webhooks: runtime.webhooks,
    updater: runtime.updater.updater,
    metrics: runtime.metrics,
  });
  const maintainIdempotencyRecords = async () => {
    await runtime.idempotency.purgeExpired();
    const { digested, failed } = await runtime.idempotency.digestLegacyKeys();
    if (digested > 0 || failed > 0) log.info({ digested, failed }, 'idempotency keys from before migration 0013 kept as digests');
  };
  maintainIdempotencyRecords().catch((err) => log.warn({ err }, 'idempotency maintenance failed'));
  const purge = setInterval(() => {
    maintainIdempotencyRecords().catch((err) => log.warn({ err }, 'idempotency maintenance failed'));
  }, PURGE_INTERVAL_MS);
  purge.unref();

  const server = await new Promise<Server>((resolve, reject) => {
    const s = createHttpServer(app);
    s.once('error', reject);
    s.listen(config.port, config.host, () => resolve(s));
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;
  runtime.checkpointer.start();
  // Outbound calls (networks, merchants' webhooks) come from the worker; in production that is `cardvault worker`.
  if (config.updater.worker === 'in-process') {
    runtime.updater.worker.start();
    runtime.webhookDeliverer.start(WEBHOOK_DELIVERY_INTERVAL_MS);
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info({ port, database: runtime.db.kind, kms: runtime.kms.provider }, `cardvault listening on http://localhost:${port}`);
  await runtime.audit.record({ tenantId: null, principal: 'system', action: 'service.start', outcome: 'success', details: { pid: process.pid, port } });
  const metricsServer = await startMetrics(config, log, runtime.metrics);

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      clearInterval(purge);
      // Stop accepting, let in-flight requests finish (each is committed or failed), then close the pools. Busy
      // keep-alive connections are told to close after their next answer, so they end before the grace does.
      draining = true;
      if (config.shutdownDelaySeconds > 0) {
        // Load balancers learn of the stop a few seconds late (endpoints, kube-proxy, the ingress): until then they
        // still open connections here, which a closed listener would refuse. Keep serving them, /readyz saying 503.
        log.info({ delay_seconds: config.shutdownDelaySeconds }, 'stopping: still serving while load balancers take this instance out');
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDelaySeconds * 1000));
      }
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
        force.unref();
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      // The worker and the webhook deliveries stop first, so that their events are in the last checkpoint too.
      await runtime.quiesce().catch((err) => log.warn({ err }, 'background work did not stop cleanly'));
      await runtime.audit
        .record({ tenantId: null, principal: 'system', action: 'service.stop', outcome: 'success', details: { pid: process.pid } })
        .catch((err) => log.error({ err }, 'could not record service.stop'));
      // The last checkpoint covers everything this instance wrote.
      await runtime.checkpointer.checkpointNow().catch((err) => log.warn({ err }, 'final checkpoint failed'));
      await runtime.close();
      await metricsServer?.stop();
      log.info('cardvault stopped');
    })());
  return { server, metricsServer, stop };
}

/**
 * The METRICS_PORT listener, for the API process and `cardvault worker` alike. A port that cannot be bound costs
 * the metrics, not the vault: the error is logged and the scrape target shows down.
 */
export async function startMetrics(config: Config, log: Logger, metrics: VaultMetrics | undefined): Promise<MetricsServer | undefined> {
  if (!config.metrics || !metrics) return undefined;
  try {
    const served = await serveMetrics({ registry: metrics.registry, host: config.metrics.host, port: config.metrics.port, log });
    log.info({ metrics_port: served.port }, `metrics on http://${config.metrics.host}:${served.port}/metrics`);
    return served;
  } catch (err) {
    log.error({ err, metrics_port: config.metrics.port }, 'metrics not served: the port could not be bound');
    return undefined;
  }
}

export async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`cardvault: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // Asynchronous, as the logger's own default; held here so that a dying process can wait for its last line.
  const destination = pino.destination({ dest: 1, sync: false });
  const log = createLogger({ level: config.logLevel, destination });
  exitLoggedOnCrash(log, destination);
  try {
    const { server, stop } = await startVault(config, log);
    const stopDemo = await startDemoCheckout(config, log, server);
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.once(signal, () => {
        log.info({ signal }, 'shutting down');
        stopDemo()
          .then(stop)
          .then(
            () => process.exit(0),
            (err) => {
              log.error({ err }, 'shutdown failed');
              process.exit(1);
            },
          );
      });
    }
  } catch (err) {
    // The error by type and code, as everywhere: a driver's message can quote what it was sent. A configuration or
    // policy error's message is ours, names only the variable, or the file and field, at fault, and is what the
    // operator needs to read; a VaultError's is kept by the serializer.
    const ours = err instanceof ConfigError || err instanceof PolicyError || err instanceof StartupError;
    log.fatal({ err }, ours ? `cardvault failed to start: ${err.message}` : 'cardvault failed to start');
    exitWhenWritten(destination, 1);
  }
}

/**
 * For an exception nothing caught and a rejection nothing handled: Node's own answer prints the whole error (a
 * driver's message or detail can quote a row, a request's values) to stderr, past the logger's serializer and
 * scrubber. Here it is logged like any error, by type and code, and the process exits 1: the state it leaves is
 * unknown. A rejection is a crash too, as under Node's default (--unhandled-rejections=throw).
 */
export function exitLoggedOnCrash(log: Logger, destination: ReturnType<typeof pino.destination>): void {
  const crash = crashHandler(log, () => exitWhenWritten(destination, 1));
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', (reason) => crash(reason, 'unhandledRejection'));
}

function crashHandler(log: Logger, exit: () => void): (err: unknown, origin: string) => void {
  let exiting = false;
  return (err, origin) => {
    try {
      log.fatal({ err, origin }, 'cardvault crashed');
    } catch {
      // The logger itself failed: there is nothing safe left to write with; the exit below still comes.
    }
    if (exiting) return;
    exiting = true;
    exit();
  };
}

/**
 * Exits once the log destination has written what it holds: at once when it can be flushed synchronously, else
 * when it drains, or after LAST_LINE_MS whatever it holds.
 */
function exitWhenWritten(destination: ReturnType<typeof pino.destination>, code: number): void {
  const exit = () => process.exit(code);
  try {
    destination.flushSync();
    exit();
  } catch {
    destination.once('drain', exit);
    setTimeout(exit, LAST_LINE_MS).unref();
  }
}

/** The demo merchant on its own origin (127.0.0.1, the vault being localhost); a busy port costs the demo, not the vault. */
async function startDemoCheckout(config: Config, log: Logger, server: Server): Promise<() => Promise<void>> {
  const address = server.address();
  if (config.demoPort === undefined || typeof address !== 'object' || !address) return async () => undefined;
  try {
    const demo = await startDemo({
      vaultOrigin: `http://localhost:${address.port}`,
      vaultApiOrigin: `http://127.0.0.1:${address.port}`,
      merchantKey: () => demoMerchantKey(config.dataDir),
      assets: loadHostedAssets(),
      listenHost: config.host,
      publicHost: '127.0.0.1',
      port: config.demoPort,
      log,
    });
    log.info({ demo_port: config.demoPort }, `demo checkout on ${demo.origin} (DEMO_PORT=off turns it off)`);
    return demo.stop;
  } catch (err) {
    log.warn({ err }, 'demo checkout not started');
    return async () => undefined;
  }
}

if (require.main === module) void main();

// The process's Prometheus registry and every metric the vault exports. Labels are closed sets (route templates,
// methods, status codes, operations, actions, outcomes), never a value from a request: no PAN, token, key or tenant.
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

export type KmsOutcome = 'success' | 'failure';
export type WebhookResult = 'delivered' | 'retried' | 'dead';

/** What the instrumented parts report; each hook has the shape its module's optional option takes. */
export interface VaultMetrics {
  readonly registry: Registry;
  /** app.ts, once per response: `route` is the Express route template or `unmatched`. */
  request(method: string, route: string, status: number, seconds: number): void;
  /** metrics/instrumented-kms.ts, once per KMS call. */
  kmsCall(operation: string, outcome: KmsOutcome, seconds: number): void;
  /** crypto/keyring.ts: a data key found in (hit) or missing from (miss) the cache. */
  dataKeyLookup(hit: boolean): void;
  /** audit/audit-log.ts, once per committed batch: how long each of its events waited from record() to commit. */
  auditCommitted(waitSeconds: readonly number[]): void;
  /** http/rate-limit.ts, on each 429: the policy action, or `failed_auth`. */
  rateLimitRejection(action: string): void;
  /** updater/run-processor.ts, after each committed step: answers applied, by network and outcome. */
  updaterOutcomes(network: string, outcome: string, count: number): void;
  /** updater/run-processor.ts: a run reached `completed` or `failed`. */
  updaterRun(state: string): void;
  /** updater/webhooks/deliverer.ts, once per claimed delivery. */
  webhookDelivery(result: WebhookResult): void;
  /** hosted/http/csp-report-routes.ts, once per violation a browser reports: a closed set of directives. */
  cspViolation(directive: string, disposition: string): void;
}

/** A new registry with the process and Node.js default metrics and the vault's own; call once per process. */
export function createMetrics(): VaultMetrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const httpRequests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered by the API, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request to response finished, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const kmsRequests = new Counter({
    name: 'kms_requests_total',
    help: 'KMS calls, by operation and outcome',
    labelNames: ['operation', 'outcome'] as const,
    registers,
  });
  const kmsDuration = new Histogram({
    name: 'kms_request_duration_seconds',
    help: 'KMS call latency, by operation',
    labelNames: ['operation'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const keyLookups = new Counter({
    name: 'data_key_cache_lookups_total',
    help: 'Data-key cache lookups for opening and fingerprinting; a miss costs a KMS decrypt',
    labelNames: ['result'] as const,
    registers,
  });
  const auditWrite = new Histogram({
    name: 'audit_write_duration_seconds',
    help: 'Time from recording an audit event to its durable commit (group commit included)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const auditBatch = new Histogram({
    name: 'audit_batch_size',
    help: 'Audit events committed per transaction',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers,
  });
  const rateLimited = new Counter({
    name: 'rate_limit_rejections_total',
    help: 'Requests refused with 429, by policy action (failed_auth, csp_reports: per source address)',
    labelNames: ['action'] as const,
    registers,
  });
  const updaterOutcomes = new Counter({
    name: 'updater_outcomes_total',
    help: 'Account-updater answers applied, by network and outcome (no_response: unanswered when the batch closed)',
    labelNames: ['network', 'outcome'] as const,
    registers,
  });
  const updaterRuns = new Counter({
    name: 'updater_runs_total',
    help: 'Account-updater runs finished, by final state',
    labelNames: ['state'] as const,
    registers,
  });
  const webhookDeliveries = new Counter({
    name: 'webhook_deliveries_total',
    help: 'Webhook delivery attempts, by result (dead: dead-lettered)',
    labelNames: ['result'] as const,
    registers,
  });

  const cspViolations = new Counter({
    name: 'csp_violations_total',
    help: "Content-Security-Policy violations browsers reported on the hosted form, by directive and disposition; alert on any increase",
    labelNames: ['directive', 'disposition'] as const,
    registers,
  });

  return {
    registry,
    request: (method, route, status, seconds) => {
      const labels = { method, route, status: String(status) };
      httpRequests.inc(labels);
      httpDuration.observe(labels, seconds);
    },
    kmsCall: (operation, outcome, seconds) => {
      kmsRequests.inc({ operation, outcome });
      kmsDuration.observe({ operation }, seconds);
    },
    dataKeyLookup: (hit) => keyLookups.inc({ result: hit ? 'hit' : 'miss' }),
    auditCommitted: (waitSeconds) => {
      auditBatch.observe(waitSeconds.length);
      for (const seconds of waitSeconds) auditWrite.observe(seconds);
    },
    rateLimitRejection: (action) => rateLimited.inc({ action }),
    updaterOutcomes: (network, outcome, count) => updaterOutcomes.inc({ network, outcome }, count),
    updaterRun: (state) => updaterRuns.inc({ state }),
    webhookDelivery: (result) => webhookDeliveries.inc({ result }),
    cspViolation: (directive, disposition) => cspViolations.inc({ directive, disposition }),
  };
}

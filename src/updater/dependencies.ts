// Builds the account updater from the vault's parts: network adapters, the applier, the run processor, the worker.
import { createCardCrypto } from '../crypto/card-crypto';
import type { Keyring } from '../crypto/keyring';
import { systemClock, type AuditTrail, type CvcStore, type TenantStore } from '../domain/ports';
import type { Logger } from '../log';
import type { VaultMetrics } from '../metrics/metrics';
import { PgCardStore } from '../store/card-store';
import type { Db } from '../store/db';
import { PgUpdaterStore } from '../store/updater-store';
import { enqueueWebhookEvent } from '../store/webhook-store';
import { AccountUpdater } from './account-updater';
import { UpdateApplier } from './apply-update';
import { NETWORKS, type NetworkName } from './model';
import { dropTransport, FileDropAdapter, SimulatedNetworkAdapter, type NetworkAdapter } from './network/adapter';
import { NetworkSimulator } from './network/simulator';
import { RunProcessor } from './run-processor';
import { UpdaterWorker } from './worker';

export interface UpdaterOptions {
  /** `simulator`: every request answered at once by the built-in network (development, tests); `file-drop`: out of band. */
  network: 'simulator' | 'file-drop';
  /** Folders standing in for the SFTP exchange: `<dropDir>/<network>/{to-network,from-network}`. */
  dropDir: string;
  /** The simulator's rules file; absent, the shipped src/updater/network/simulator-rules.yaml. */
  simulatorRules?: string;
  pollSeconds: number;
  lockTtlSeconds: number;
  applyChunk: number;
  responseTimeoutHours: number;
  /** Changes left unaudited by a crash are audited by the next worker once they are this old. */
  auditSweepSeconds: number;
}

export type UpdaterParts = ReturnType<typeof assembleUpdater>;

export function assembleUpdater(parts: {
  /** Synchronous commits: every updater write is a durable, fenced step. */
  db: Db;
  keyring: Keyring;
  tenants: Pick<TenantStore, 'findTenantById'>;
  audit: AuditTrail;
  log: Logger;
  options: UpdaterOptions;
  /** Counts answers by network and outcome, and finished runs by state; absent, nothing is counted. */
  metrics?: Pick<VaultMetrics, 'updaterOutcomes' | 'updaterRun'>;
  /**
   * The vault's CVC store: a new number discards the CVC held for the old one. Absent (or another process's memory),
   * that CVC stays until its TTL and an authorization may get it with the new number.
   */
  cvcs?: Pick<CvcStore, 'discard'>;
}) {
  const { db, options, audit, log, metrics } = parts;
  const crypto = createCardCrypto(parts.keyring);
  const simulator = options.network === 'simulator' ? NetworkSimulator.fromFile(options.simulatorRules) : undefined;
  const adapters = Object.fromEntries(
    NETWORKS.map((network): [NetworkName, NetworkAdapter] => {
      const transport = dropTransport(options.dropDir, network);
      return [network, simulator ? new SimulatedNetworkAdapter(network, transport, simulator) : new FileDropAdapter(network, transport)];
    }),
  ) as Record<NetworkName, NetworkAdapter>;
  const store = new PgUpdaterStore(db);
  const applier = new UpdateApplier({ crypto, clock: systemClock, enqueue: enqueueWebhookEvent });
  const processor = new RunProcessor({
    store,
    tenants: parts.tenants,
    crypto,
    applier,
    adapters,
    audit,
    clock: systemClock,
    log,
    applyChunk: options.applyChunk,
    responseTimeoutMs: options.responseTimeoutHours * 3600_000,
    observer: metrics && { outcomes: metrics.updaterOutcomes, runFinished: metrics.updaterRun },
    cvcs: parts.cvcs,
  });
  const updater = new AccountUpdater({ store, cards: new PgCardStore(db), crypto, applier, processor, adapters, audit, clock: systemClock });
  const worker = new UpdaterWorker({
    store,
    processor,
    adapters,
    audit,
    log,
    lockTtlSeconds: options.lockTtlSeconds,
    pollMs: options.pollSeconds * 1000,
    auditSweepMs: options.auditSweepSeconds * 1000,
  });
  return { updater, processor, worker, adapters, store };
}

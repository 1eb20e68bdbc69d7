// The account-updater worker: starts scheduled runs, advances open ones under a fenced per-tenant lock, sweeps.
import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { AuditTrail } from '../domain/ports';
import type { Logger } from '../log';
import { FencedOut, type PgUpdaterStore } from '../store/updater-store';
import { NETWORK_COVERAGE, NETWORKS, type NetworkName } from './model';
import type { NetworkAdapter } from './network/adapter';
import type { RunProcessor } from './run-processor';

export interface WorkerDeps {
  store: PgUpdaterStore;
  processor: RunProcessor;
  adapters: Readonly<Record<NetworkName, NetworkAdapter>>;
  audit: AuditTrail;
  log: Logger;
  lockTtlSeconds: number;
  pollMs: number;
  /** Changes a crash left unaudited are swept once they are this old, so a live worker's own audit is not doubled. */
  auditSweepMs: number;
}

export class UpdaterWorker {
  /** Names this worker in the lock table: host, pid and a random part, so two workers in one process differ. */
  readonly holder = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  /** Set by stop(): the loop schedules no further tick, and a tick in flight leaves its remaining runs for later. */
  #stopping = false;

  constructor(private readonly deps: WorkerDeps) {}

  start(): void {
    this.#stopping = false;
    const loop = () => {
      if (this.#stopping) return;
      this.#running = this.tick()
        .catch((err) => this.deps.log.error({ err }, 'account-updater tick failed'))
        .finally(() => {
          this.#running = undefined;
          if (!this.#stopping) this.#timer = setTimeout(loop, this.deps.pollMs);
        });
    };
    loop();
  }

  /** Lets the current step finish (each is a transaction) and stops; a run in flight resumes on the next start. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /**
   * One pass: schedule, advance every open run this worker can lock, re-read stray files, sweep audits. With
   * `onlyTenant` (the CLI's `updater run`), only that tenant is scheduled and advanced.
   */
  async tick(onlyTenant?: string): Promise<void> {
    await this.schedule(onlyTenant);
    // One run that fails (a tenant's settings changed under it, the KMS away for its tenant) must not hold up the
    // runs of every tenant after it: each is tried, and the first failure is thrown once all have been.
    const failures: unknown[] = [];
    for (const run of await this.deps.store.openRuns()) {
      if (onlyTenant !== undefined && run.tenantId !== onlyTenant) continue;
      if (this.#stopping) return;
      try {
        await this.withLock(run.tenantId, (fence) => this.deps.processor.advance(run, fence));
      } catch (err) {
        this.deps.log.error({ err, run_id: run.id, tenant_id: run.tenantId }, 'account-updater run could not advance');
        failures.push(err);
      }
    }
    await this.rereadStrayFiles();
    await this.sweepUnaudited();
    if (failures.length > 0) throw failures[0];
  }

  private async schedule(onlyTenant: string | undefined): Promise<void> {
    for (const tenantId of await this.deps.store.dueTenants(NETWORK_COVERAGE)) {
      if (onlyTenant !== undefined && tenantId !== onlyTenant) continue;
      const { run, created } = await this.deps.store.openRun({ id: randomUUID(), tenantId, trigger: 'schedule', scope: 'due', requestedBy: 'schedule' });
      if (!created) continue;
      await this.deps.audit.record({ tenantId, principal: 'system', action: 'updater.run.start', outcome: 'success', details: { run_id: run.id, trigger: 'schedule', scope: 'due' } });
      this.deps.log.info({ run_id: run.id, tenant_id: tenantId }, 'account-updater run scheduled');
    }
  }

  /** Runs `work` holding the tenant's lock, renewing it meanwhile; does nothing when another worker holds it. */
  private async withLock(tenantId: string, work: (fence: number) => Promise<void>): Promise<void> {
    const { store, lockTtlSeconds, log } = this.deps;
    const fence = await store.acquireLock(tenantId, this.holder, lockTtlSeconds);
    if (fence === undefined) return;
    const renew = setInterval(() => {
      store.renewLock(tenantId, fence, lockTtlSeconds).catch((err) => log.warn({ err }, 'account-updater lock renewal failed'));
    }, (lockTtlSeconds * 1000) / 3);
    try {
      await work(fence);
    } catch (err) {
      if (!(err instanceof FencedOut)) throw err;
      log.warn({ tenant_id: tenantId, fence }, 'account-updater lock lost to another worker; stopped');
    } finally {
      clearInterval(renew);
      await store.releaseLock(tenantId, fence).catch(() => undefined);
    }
  }

  /**
   * Response files no open run collects. One for a batch applied already (dropped twice) is read and changes
   * nothing. One that arrived after its run timed out is applied, once, like any answer: a new card number or
   * expiry is worth having late, and nothing else would ever read (or delete) the file.
   */
  private async rereadStrayFiles(): Promise<void> {
    for (const network of NETWORKS) {
      const adapter = this.deps.adapters[network];
      for (const batchId of await adapter.waiting()) {
        const batch = await this.deps.store.batch(batchId);
        if (!batch) {
          await this.discardUnclaimed(adapter, batchId);
          continue;
        }
        if (batch.state !== 'applied' && (await this.deps.store.findRun(batch.tenantId, batch.runId))?.state !== 'failed') continue;
        await this.withLock(batch.tenantId, async (fence) => {
          const text = await adapter.receive(batchId);
          if (text !== undefined) await this.deps.processor.ingest(batchId, text, fence);
        });
      }
    }
  }

  /**
   * A response file for a batch this vault's database does not know (dropped in the wrong folder, meant for another
   * vault behind the same relay, or answering a batch lost with a restored database) cannot be ours to apply, and no
   * run will ever read or delete it; it holds card numbers, so it goes. Not at once: a file can reach the folder
   * before this worker sees the row of the batch it answers (a commit in flight, a database failed over), so it is
   * deleted once it is older than the response timeout, when no run could still be waiting for it. The warning names
   * the batch id only, like every updater log line (the scrubber masks a digit run in it as anywhere): never the
   * file's path or a line of it.
   */
  private async discardUnclaimed(adapter: NetworkAdapter, batchId: string): Promise<void> {
    const receivedAt = await adapter.receivedAt(batchId);
    if (receivedAt === undefined || !this.deps.processor.pastResponseTimeout(receivedAt)) return;
    await adapter.discard(batchId);
    this.deps.log.warn({ batch_id: batchId, network: adapter.network }, 'account-updater response file for a batch this vault does not know deleted');
  }

  /** Audits what a crashed worker committed but did not audit; what it audited but did not mark is only marked. */
  private async sweepUnaudited(): Promise<void> {
    const stale = (await this.deps.store.unauditedUpdates(500)).filter((u) => Date.now() - u.createdAt.getTime() > this.deps.auditSweepMs);
    if (stale.length === 0) return;
    const audited = await this.deps.store.alreadyAudited(stale);
    await this.deps.store.markAudited([...audited]);
    await this.deps.processor.auditUpdates(stale.filter((u) => !audited.has(String(u.id))));
  }
}

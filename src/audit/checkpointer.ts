// Signs checkpoints of the audit tree (origin, size, root) at least every N events or T seconds, from any instance.
import type { Clock } from '../domain/ports';
import type { CheckpointSigner } from '../crypto/checkpoint-signer';
import type { Logger } from '../log';
import type { CheckpointRow, PgAuditStore } from '../store/audit-store';
import { canonicalJson } from './canonical-json';
import { MerkleFrontier } from './merkle';

export interface CheckpointPayload {
  origin: string;
  tree_size: number;
  root_hash: string;
  timestamp: string;
}

export interface CheckpointPolicy {
  origin: string;
  maxEvents: number;
  maxAgeMs: number;
  /** How often each instance looks at the head. */
  pollMs: number;
}

export class Checkpointer {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(
    private readonly store: PgAuditStore,
    private readonly signer: CheckpointSigner,
    private readonly clock: Clock,
    private readonly policy: CheckpointPolicy,
    private readonly log: Logger,
  ) {}

  /** Signs the current head unless a checkpoint of that size exists; returns the checkpoint covering the head. */
  async checkpointNow(): Promise<CheckpointRow | undefined> {
    const head = await this.store.head();
    const latest = await this.store.latestCheckpoint();
    if (head.size === 0 || (latest && latest.treeSize >= head.size)) return latest;
    const frontier = MerkleFrontier.fromJSON(head.frontier);
    const root = frontier.root();
    const payload: CheckpointPayload = {
      origin: this.policy.origin,
      tree_size: head.size,
      root_hash: root.toString('base64'),
      timestamp: this.clock.now().toISOString(),
    };
    const jws = await this.signer.sign(Buffer.from(canonicalJson(payload), 'utf8'));
    await this.store.insertCheckpoint({ treeSize: head.size, rootHash: root, frontier: head.frontier, jws });
    return this.store.latestCheckpoint();
  }

  /** Checkpoints when the head has grown by maxEvents, or has any new event and the last one is maxAge old. */
  async checkpointIfDue(): Promise<void> {
    const head = await this.store.head();
    const latest = await this.store.latestCheckpoint();
    const pending = head.size - (latest?.treeSize ?? 0);
    if (pending <= 0) return;
    const age = latest ? this.clock.now().getTime() - latest.createdAt.getTime() : Infinity;
    if (pending >= this.policy.maxEvents || age >= this.policy.maxAgeMs) await this.checkpointNow();
  }

  start(): void {
    this.#timer = setInterval(() => {
      this.#running ??= this.checkpointIfDue()
        .catch((err) => this.log.warn({ err }, 'audit checkpoint failed; will retry'))
        .finally(() => {
          this.#running = undefined;
        });
    }, this.policy.pollMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}

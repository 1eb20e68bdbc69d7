// The auditor's use cases: the latest checkpoint, inclusion and consistency proofs, and the export; each audited,
// denials included.
import type { CheckpointSigner } from '../crypto/checkpoint-signer';
import { audited } from '../domain/audited';
import { authorize, type Principal } from '../domain/policy';
import type { AuditTrail, RequestContext } from '../domain/ports';
import { VaultError } from '../errors';
import type { PgAuditStore } from '../store/audit-store';
import type { Checkpointer } from './checkpointer';
import { exportAuditLog } from './export';
import { consistencyRanges, inclusionRanges, MerkleFrontier, type LeafRange } from './merkle';

const b64 = (hashes: Buffer[]) => hashes.map((h) => h.toString('base64'));

/** Leaf hashes read per query for a proof: a proof spans the whole log, which need not fit in memory or one statement. */
export const PROOF_READ_CHUNK = 1000;

export class AuditService {
  constructor(
    private readonly store: PgAuditStore,
    private readonly checkpointer: Checkpointer,
    private readonly signer: CheckpointSigner,
    private readonly trail: AuditTrail,
    private readonly origin: string,
  ) {}

  jwks(): Promise<{ keys: Record<string, unknown>[] }> {
    return this.signer.jwks();
  }

  latestCheckpoint(principal: Principal, ctx: RequestContext) {
    return this.read(principal, ctx, { what: 'checkpoint' }, async () => {
      const checkpoint = (await this.store.latestCheckpoint()) ?? (await this.checkpointer.checkpointNow());
      if (!checkpoint) throw new VaultError('not_found', 'the audit log has no checkpoint yet');
      return { tree_size: checkpoint.treeSize, root_hash: checkpoint.rootHash.toString('base64'), jws: checkpoint.jws };
    });
  }

  /** Proofs read every leaf hash up to tree_size, a chunk at a time: fine for audit traffic, not for a hot path. */
  inclusion(principal: Principal, ctx: RequestContext, seq: number, treeSize: number) {
    return this.read(principal, ctx, { what: 'inclusion_proof', seq, tree_size: treeSize }, async () => {
      await this.requireSize(treeSize, '/tree_size');
      if (seq >= treeSize) throw new VaultError('invalid_field', 'seq must be below tree_size', { pointer: '/seq' });
      const [leaf] = await this.rangeRoots([[seq, seq + 1]]);
      return { seq, tree_size: treeSize, leaf_hash: leaf!.toString('base64'), proof: b64(await this.rangeRoots(inclusionRanges(seq, treeSize))) };
    });
  }

  consistency(principal: Principal, ctx: RequestContext, first: number, second: number) {
    return this.read(principal, ctx, { what: 'consistency_proof', first, second }, async () => {
      await this.requireSize(second, '/second');
      if (first < 1 || first > second) throw new VaultError('invalid_field', 'first must be from 1 to second', { pointer: '/first' });
      return { first, second, proof: b64(await this.rangeRoots(consistencyRanges(first, second))) };
    });
  }

  /** Operators (a role with `admin`) export every tenant; everyone else their own, other tenants as bare hashes. */
  export(principal: Principal, ctx: RequestContext, from: Date | null, to: Date | null): Promise<AsyncGenerator<string>> {
    return audited(this.trail, principal, ctx, 'audit.export', null, async () => {
      authorize(principal, 'audit.read');
      const tenantId = principal.role.actions.has('admin') ? null : principal.tenant.id;
      return {
        result: exportAuditLog(this.store, this.checkpointer, this.origin, { tenantId, from, to }),
        details: { scope: tenantId === null ? 'all_tenants' : 'tenant', from: from?.toISOString() ?? null, to: to?.toISOString() ?? null },
      };
    });
  }

  private read<T>(principal: Principal, ctx: RequestContext, details: Record<string, unknown>, work: () => Promise<T>): Promise<T> {
    return audited(this.trail, principal, ctx, 'audit.read', null, async () => {
      authorize(principal, 'audit.read');
      return { result: await work(), details };
    });
  }

  /** Each range's subtree root, folded as its leaf hashes arrive: memory stays at one chunk however long the log. */
  private async rangeRoots(ranges: readonly LeafRange[]): Promise<Buffer[]> {
    const roots: Buffer[] = [];
    for (const [lo, hi] of ranges) {
      const frontier = new MerkleFrontier();
      for (let from = lo; from < hi; from += PROOF_READ_CHUNK) {
        for (const hash of await this.store.leafHashes(from, Math.min(from + PROOF_READ_CHUNK, hi))) frontier.append(hash);
      }
      // A missing row would give a root of fewer leaves: refused, as the whole-log read refused it before.
      if (frontier.size !== hi - lo) throw new VaultError('internal_error', 'the audit log has a gap below its head');
      roots.push(frontier.root());
    }
    return roots;
  }

  private async requireSize(treeSize: number, pointer: string): Promise<void> {
    if ((await this.store.head()).size < treeSize) {
      throw new VaultError('invalid_field', `${pointer.slice(1)} is larger than the log`, { pointer });
    }
  }
}

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
import { consistencyProof, inclusionProof } from './merkle';

const b64 = (hashes: Buffer[]) => hashes.map((h) => h.toString('base64'));

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

  /** Proofs read every leaf hash up to tree_size: fine for audit traffic, not for a hot path. */
  inclusion(principal: Principal, ctx: RequestContext, seq: number, treeSize: number) {
    return this.read(principal, ctx, { what: 'inclusion_proof', seq, tree_size: treeSize }, async () => {
      await this.requireSize(treeSize, '/tree_size');
      if (seq >= treeSize) throw new VaultError('invalid_field', 'seq must be below tree_size', { pointer: '/seq' });
      const leaves = await this.store.leafHashes(0, treeSize);
      return { seq, tree_size: treeSize, leaf_hash: leaves[seq]!.toString('base64'), proof: b64(inclusionProof(leaves, seq, treeSize)) };
    });
  }

  consistency(principal: Principal, ctx: RequestContext, first: number, second: number) {
    return this.read(principal, ctx, { what: 'consistency_proof', first, second }, async () => {
      await this.requireSize(second, '/second');
      if (first < 1 || first > second) throw new VaultError('invalid_field', 'first must be from 1 to second', { pointer: '/first' });
      const leaves = await this.store.leafHashes(0, second);
      return { first, second, proof: b64(consistencyProof(leaves, first, second)) };
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

  private async requireSize(treeSize: number, pointer: string): Promise<void> {
    if ((await this.store.head()).size < treeSize) {
      throw new VaultError('invalid_field', `${pointer.slice(1)} is larger than the log`, { pointer });
    }
  }
}

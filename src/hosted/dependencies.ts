// Builds what the hosted form needs from the vault's parts: the non-consuming session check and the browser files.
import { SessionTokens } from '../crypto/session-signer';
import type { CheckpointSigner } from '../crypto/checkpoint-signer';
import { systemClock } from '../domain/ports';
import type { Db } from '../store/db';
import { PgClientSessionStore } from '../store/client-session-store';
import { loadHostedAssets } from './assets';
import type { HostedPageDeps } from './http/hosted-page-routes';
import { PageSessions } from './page-session';

/** Verifies sessions exactly as assembleVault's ClientSessions does: the same signer, the same table. */
export function assembleHosted(parts: { db: Db; signer: Pick<CheckpointSigner, 'sign' | 'verify'> }): HostedPageDeps {
  const tokens = new SessionTokens((payload, typ) => parts.signer.sign(payload, typ), (jws) => parts.signer.verify(jws), systemClock);
  return {
    pageSessions: new PageSessions({ tokens, sessions: new PgClientSessionStore(parts.db), clock: systemClock }),
    assets: loadHostedAssets(),
  };
}

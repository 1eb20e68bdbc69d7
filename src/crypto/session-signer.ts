// Client-session tokens: compact JWS (ES256) under the vault's signing keys, explicitly typed and audienced.
import type { SessionClaims, SessionTokenCodec } from '../domain/client-sessions';
import { MAX_ALLOWED_ORIGINS, MAX_SESSION_TTL_SECONDS } from '../domain/client-sessions';
import type { Clock } from '../domain/ports';
import { isVaultError, VaultError } from '../errors';
import { isCanonicalUuid } from '../domain/uuid';

/**
 * The checkpoint signer's keys sign both audit checkpoints and client sessions, so every instance can verify
 * a session another created without a second key hierarchy. Two marks keep the two kinds of statement apart
 * (RFC 8725 §3.11 explicit typing, §3.9 audience): the protected header's `typ` and the payload's `aud`.
 * A checkpoint carries typ `cardvault-checkpoint+jws` and no `aud`, so `verify` below refuses it before
 * reading its payload; a session carries this typ, which verifyCheckpointJws refuses, so an auditor's tool
 * never accepts a session as a signed tree head. Without the checks a signature alone would prove only
 * "the vault signed these bytes", and whichever parser got there first would decide what they meant.
 */
export const SESSION_TYP = 'cardvault-client-session+jws';
export const SESSION_AUD = 'cardvault:hosted-form';

/** CheckpointSigner.sign: signs with the active key, writing `typ` and `kid` into the protected header. */
export type SignJws = (payload: Buffer, typ: string) => Promise<string>;
/** CheckpointSigner.verify: checks an ES256 signature against the published keys; throws on any failure. */
export type VerifyJws = (jws: string) => Promise<{ payload: Buffer; typ: string }>;

/** Ten origins of the longest length, base64url-encoded, fit with room to spare; anything longer is not ours. */
const MAX_TOKEN_CHARS = 8192;
const COMPACT_JWS = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{86})$/;
const HEADER_FIELDS = ['alg', 'kid', 'typ'];
const CLAIMS = ['aud', 'exp', 'iat', 'jti', 'origins', 'tid'];
/** How far ahead of our clock another instance's may be when it issues a token. */
const CLOCK_SKEW_SECONDS = 60;

interface Payload {
  aud: string;
  jti: string;
  tid: string;
  origins: string[];
  iat: number;
  exp: number;
}

const invalid = () => new VaultError('session_invalid');
const hasExactly = (value: object, names: string[]) => Object.keys(value).sort().join() === names.join();
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Unpadded base64url with zero trailing bits: the one spelling of its bytes. */
const canonical = (part: string) => Buffer.from(part, 'base64url').toString('base64url') === part;

/**
 * Shape and header first, before any signature work: only what we issue gets as far as the key. An ES256
 * signature is exactly 64 bytes (86 characters); node-jose ignores bytes past them, so without this check one
 * session would verify under many spellings.
 */
function checkHeader(token: string): void {
  const match = token.length <= MAX_TOKEN_CHARS ? COMPACT_JWS.exec(token) : null;
  if (!match || !match.slice(1).every(canonical)) throw invalid();
  const header = parseJson(Buffer.from(match[1]!, 'base64url'));
  if (!isObject(header) || !hasExactly(header, HEADER_FIELDS) || header.alg !== 'ES256' || header.typ !== SESSION_TYP) throw invalid();
  if (typeof header.kid !== 'string') throw invalid();
}

function parsePayload(bytes: Buffer): Payload {
  const p = parseJson(bytes);
  if (!isObject(p) || !hasExactly(p, CLAIMS) || p.aud !== SESSION_AUD) throw invalid();
  if (typeof p.jti !== 'string' || !isCanonicalUuid(p.jti) || typeof p.tid !== 'string' || !isCanonicalUuid(p.tid)) throw invalid();
  const { origins, iat, exp } = p;
  if (!Array.isArray(origins) || origins.length < 1 || origins.length > MAX_ALLOWED_ORIGINS) throw invalid();
  if (!origins.every((o) => typeof o === 'string')) throw invalid();
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw invalid();
  if ((exp as number) <= (iat as number) || (exp as number) - (iat as number) > MAX_SESSION_TTL_SECONDS) throw invalid();
  return p as unknown as Payload;
}

export class SessionTokens implements SessionTokenCodec {
  constructor(
    private readonly signJws: SignJws,
    private readonly verifyJws: VerifyJws,
    private readonly clock: Clock,
  ) {}

  issue(claims: SessionClaims): Promise<string> {
    const payload: Payload = {
      aud: SESSION_AUD,
      jti: claims.id,
      tid: claims.tenantId,
      origins: [...claims.allowedOrigins],
      iat: Math.floor(claims.issuedAt.getTime() / 1000),
      exp: Math.floor(claims.expiresAt.getTime() / 1000),
    };
    return this.signJws(Buffer.from(JSON.stringify(payload), 'utf8'), SESSION_TYP);
  }

  async verify(token: string): Promise<SessionClaims> {
    checkHeader(token);
    let verified: { payload: Buffer; typ: string };
    try {
      verified = await this.verifyJws(token);
    } catch (err) {
      // An outage is not a bad token: the form may retry. Every other failure looks the same.
      if (isVaultError(err) && err.retryable) throw err;
      throw invalid();
    }
    if (verified.typ !== SESSION_TYP) throw invalid();
    const payload = parsePayload(verified.payload);
    const now = Math.floor(this.clock.now().getTime() / 1000);
    if (payload.iat > now + CLOCK_SKEW_SECONDS) throw invalid();
    // Told apart from invalid only now that the signature is known to be ours.
    if (payload.exp <= now) throw new VaultError('session_expired');
    return {
      id: payload.jti,
      tenantId: payload.tid,
      allowedOrigins: payload.origins,
      issuedAt: new Date(payload.iat * 1000),
      expiresAt: new Date(payload.exp * 1000),
    };
  }
}

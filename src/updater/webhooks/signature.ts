// Webhook signatures: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, made by us, checked by receivers.
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The request header that carries the signature. */
export const SIGNATURE_HEADER = 'Cardvault-Signature';
/** How far a receiver lets the signed time stray from its clock, either way, before calling it a replay. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** The whole secret string (its `whsec_` prefix included) is the HMAC key, so receivers use it exactly as given. */
function mac(secret: string, timestampSeconds: number, body: string): Buffer {
  return createHmac('sha256', secret).update(`${timestampSeconds}.${body}`, 'utf8').digest();
}

export function signatureHeader(secret: string, timestampSeconds: number, body: string): string {
  if (!Number.isSafeInteger(timestampSeconds) || timestampSeconds < 0) throw new RangeError('the timestamp is whole unix seconds');
  return `t=${timestampSeconds},v1=${mac(secret, timestampSeconds, body).toString('hex')}`;
}

const TIMESTAMP = /^[0-9]{1,12}$/;
const V1 = /^[0-9a-f]{64}$/;
const SCHEME = /^[a-z][a-z0-9]{0,15}$/;

/** t once, at least one v1; other schemes are skipped so a later scheme can be added without breaking receivers. */
function parse(header: string): { timestamp: number; signatures: Buffer[] } | undefined {
  if (header.length > 1024) return undefined;
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    const [key, value] = eq < 0 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)];
    if (key === 't') {
      if (timestamp !== undefined || !TIMESTAMP.test(value)) return undefined;
      timestamp = Number(value);
    } else if (key === 'v1') {
      if (!V1.test(value)) return undefined;
      signatures.push(Buffer.from(value, 'hex'));
    } else if (!SCHEME.test(key) || value.length === 0) {
      return undefined;
    }
  }
  return timestamp === undefined || signatures.length === 0 ? undefined : { timestamp, signatures };
}

/**
 * True only for a well-formed header whose time is within `toleranceSeconds` of `nowSeconds` and one of whose
 * v1 signatures is the HMAC of exactly these body bytes under `secret`. Compared in constant time.
 */
export function verifySignature(
  header: string | undefined,
  body: string,
  secret: string,
  nowSeconds: number,
  toleranceSeconds = DEFAULT_TOLERANCE_SECONDS,
): boolean {
  if (typeof header !== 'string') return false;
  const parsed = parse(header);
  if (!parsed || Math.abs(nowSeconds - parsed.timestamp) > toleranceSeconds) return false;
  const expected = mac(secret, parsed.timestamp, body);
  // Every candidate is compared, so the time taken does not say which one (or whether any) matched.
  return parsed.signatures.reduce((ok, given) => timingSafeEqual(expected, given) || ok, false);
}

// UUIDs given to us from outside (paths, arguments, token claims), checked before they reach a query or a log.

/** Any case, as PostgreSQL's uuid type reads it: checked first, a malformed id is "not found", not a cast error. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Lowercase only, as crypto.randomUUID() writes it: the one spelling of an id we signed. */
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const isUuid = (value: string): boolean => UUID.test(value);
export const isCanonicalUuid = (value: string): boolean => CANONICAL_UUID.test(value);

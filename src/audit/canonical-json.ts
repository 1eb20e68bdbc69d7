// RFC 8785 (JCS) canonical JSON for what the audit log hashes: plain objects, arrays, strings, finite numbers,
// booleans and null. Anything else is refused rather than coerced, so the hashed bytes never depend on a toJSON.

// With the u flag a surrogate pair is one code point, so this matches only unpaired halves, which I-JSON
// (and therefore JCS, RFC 8785 §3.1) forbids.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

export function canonicalJson(value: unknown): string {
  return serialize(value, new Set());
}

function serialize(value: unknown, ancestors: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return serializeNumber(value);
    case 'string':
      return serializeString(value);
    case 'object':
      return Array.isArray(value) ? serializeArray(value, ancestors) : serializeObject(value, ancestors);
    default:
      throw new TypeError(`canonical JSON has no form for a ${typeof value}`);
  }
}

function serializeNumber(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError('canonical JSON has no form for a non-finite number');
  // RFC 8785 §3.2.2.3 is ECMAScript's Number::toString for finite numbers, which String() is (and -0 gives "0").
  return String(n);
}

function serializeString(s: string): string {
  if (LONE_SURROGATE.test(s)) throw new TypeError('canonical JSON has no form for a lone surrogate');
  // JSON.stringify's escaping (\b \t \n \f \r, other controls as lowercase \u00xx, " and \, nothing else)
  // is the one RFC 8785 §3.2.2.2 prescribes.
  return JSON.stringify(s);
}

function serializeArray(items: readonly unknown[], ancestors: Set<object>): string {
  enter(items, ancestors);
  const parts: string[] = [];
  // An index loop rather than map: map skips holes, which must be refused like undefined.
  for (let i = 0; i < items.length; i += 1) {
    if (items[i] === undefined) throw new TypeError('canonical JSON has no form for undefined in an array');
    parts.push(serialize(items[i], ancestors));
  }
  ancestors.delete(items);
  return `[${parts.join(',')}]`;
}

function serializeObject(object: object, ancestors: Set<object>): string {
  const proto: unknown = Object.getPrototypeOf(object);
  // Dates, Buffers, Maps and class instances would each need a convention; callers convert them explicitly.
  if (proto !== Object.prototype && proto !== null) throw new TypeError('canonical JSON takes only plain objects');
  enter(object, ancestors);
  const record = object as Record<string, unknown>;
  const parts: string[] = [];
  // The default sort compares UTF-16 code units, which is the order RFC 8785 §3.2.3 requires.
  for (const key of Object.keys(record).sort()) {
    const member = record[key];
    if (member === undefined) continue; // as JSON.stringify does: an absent optional field
    parts.push(`${serializeString(key)}:${serialize(member, ancestors)}`);
  }
  ancestors.delete(object);
  return `{${parts.join(',')}}`;
}

function enter(container: object, ancestors: Set<object>): void {
  if (ancestors.has(container)) throw new TypeError('canonical JSON has no form for a cyclic value');
  ancestors.add(container);
}

// The one logger: pino with redaction of sensitive paths, and a last-line scrubber that masks PAN-like digit runs.
import pino, { type Logger, type DestinationStream } from 'pino';
import { VaultError } from './errors';

export type { Logger };

/**
 * 12 or more digits, each pair at most three separators apart (space, tab, dash, dot, underscore, slash, a no-break,
 * figure, thin or narrow no-break space as copied from formatted text, a URL-encoded space `%20`, or an escaped
 * newline or tab in the JSON line): anything that could be a card number, however it was split, and a card number
 * run together with more digits (an expiry after it). A date, a time or an IPv4 address with fewer than 12 digits
 * is left alone; over-masking a long number is the safe side.
 */
const PAN_LIKE = /(?<![0-9])[0-9](?:(?:[ \t\u00a0\u2007\u2009\u202f._/-]|\\[nrt]|%20){0,3}[0-9]){11,}(?![0-9])/g;

/** What a run holds besides its digits: `%20` and the escapes go whole, or their letters and digits would count. */
const NOT_A_DIGIT = /\\[nrt]|%20|[^0-9]/g;

/**
 * A canonical UUID (8-4-4-4-12 hex, either case) standing alone, also at the start of an escaped new line. About 3.4%
 * of random ones hold 12 or more digits across their dashes, and masking those cost operators their correlation ids.
 */
const UUID = /(?<=^|[^0-9A-Za-z]|\\[nrt])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])/g;

/**
 * Where the UUIDs with a hex letter lie in the line. One of decimal digits only is 32 digits that could be written
 * around a card number (41111111-1111-1111-…), with nothing to say it is an identifier: it is masked like any run.
 */
function identifierSpans(line: string): Array<[number, number]> {
  return [...line.matchAll(UUID)].filter(([id]) => /[A-Fa-f]/.test(id)).map(({ index, 0: id }) => [index, index + id.length]);
}

/**
 * Masks every PAN-like run but one that lies wholly inside such a UUID. A run reaching past the UUID, into digits
 * before or after it, is masked whole: so a card number can only go through by being written as part of a UUID.
 */
export function maskPanLike(line: string): string {
  let identifiers: Array<[number, number]> | undefined;
  return line.replace(PAN_LIKE, (run, offset: number) => {
    identifiers ??= identifierSpans(line);
    if (identifiers.some(([start, end]) => start <= offset && offset + run.length <= end)) return run;
    const digits = run.replace(NOT_A_DIGIT, '');
    return `${'*'.repeat(digits.length - 4)}${digits.slice(-4)}`;
  });
}

const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'card',
  '*.card',
  'number',
  '*.number',
  'cvc',
  '*.cvc',
  'pan',
  '*.pan',
  'apiKey',
  '*.apiKey',
  'key',
  '*.key',
  'secret',
  '*.secret',
  'password',
  '*.password',
  // Two levels down and inside arrays, for the fields a card or a key can sit in.
  ...['card', 'number', 'cvc', 'pan', 'apiKey', 'key', 'secret', 'password'].flatMap((field) => [`*.*.${field}`, `*[*].${field}`, `*.*[*].${field}`]),
];

/** Wraps a destination so every serialized line is scrubbed before it is written, in every environment. */
function scrubbing(destination: DestinationStream): DestinationStream {
  return { write: (line: string) => destination.write(maskPanLike(line)) };
}

export function createLogger(options: { level: string; destination?: DestinationStream }): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: false });
  return pino(
    {
      level: options.level,
      base: { service: 'cardvault' },
      // ISO time: an epoch-millisecond timestamp is 13 digits and would be masked as a PAN.
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      // The keys an error is logged under: each one by type and code, never by what its message or fields quote.
      serializers: { err: serializeError, error: serializeError, cause: serializeError },
      hooks: {
        // pino copies an Error's message into msg when the Error is the first argument; route it through the serializer.
        logMethod(args, method) {
          if (args[0] instanceof Error) {
            const [err, ...rest] = args as unknown[];
            return method.apply(this, [{ err }, ...(rest.length > 0 ? rest : ['error'])] as Parameters<typeof method>);
          }
          return method.apply(this, args);
        },
      },
    },
    scrubbing(destination),
  );
}

/** Errors are logged by type and code only: messages of parser and driver errors can quote input. */
function serializeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { type: typeof err };
  const code = (err as { code?: unknown }).code;
  const out: Record<string, unknown> = { type: err.name };
  if (typeof code === 'string') out.code = code;
  if (err instanceof VaultError) out.message = err.message;
  // Only the frames: a message can span lines, and its later lines would otherwise ride along in the stack.
  const frames = (err.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
  if (frames.length > 0) out.stack = frames.slice(0, 8).join('\n');
  return out;
}

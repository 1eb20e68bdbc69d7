// The one logger: pino with redaction of sensitive paths, and a last-line scrubber that masks PAN-like digit runs.
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** 12–19 digits, optionally split by single spaces or dashes: anything that could be a card number. */
const PAN_LIKE = /(?<![0-9])[0-9](?:[ -]?[0-9]){11,18}(?![0-9])/g;

export function maskPanLike(line: string): string {
  return line.replace(PAN_LIKE, (run) => {
    const digits = run.replace(/[ -]/g, '');
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
      serializers: { err: serializeError },
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
  if (err.name === 'VaultError') out.message = err.message;
  if (err.stack) out.stack = err.stack.split('\n').slice(1, 8).join('\n');
  return out;
}

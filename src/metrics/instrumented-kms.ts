// A Kms that counts and times every call of the one it wraps; arguments and results pass through untouched.
import type { Kms } from '../domain/ports';
import type { VaultMetrics } from './metrics';

type Operation = Exclude<keyof Kms, 'provider'>;

/** The `operation` label of each method; a method added to the port fails to compile here until it is named. */
const OPERATIONS: Record<Operation, string> = {
  generateDataKey: 'generate_data_key',
  decryptDataKey: 'decrypt_data_key',
  reEncrypt: 're_encrypt',
  resolveKeyId: 'resolve_key_id',
};

export function instrumentKms(kms: Kms, metrics: Pick<VaultMetrics, 'kmsCall'>): Kms {
  const timed =
    <K extends Operation>(method: K) =>
    async (...args: Parameters<Kms[K]>): Promise<Awaited<ReturnType<Kms[K]>>> => {
      const started = process.hrtime.bigint();
      const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
      try {
        const result = (await Reflect.apply(kms[method], kms, args)) as Awaited<ReturnType<Kms[K]>>;
        metrics.kmsCall(OPERATIONS[method], 'success', seconds());
        return result;
      } catch (err) {
        metrics.kmsCall(OPERATIONS[method], 'failure', seconds());
        throw err;
      }
    };
  return {
    provider: kms.provider,
    generateDataKey: timed('generateDataKey'),
    decryptDataKey: timed('decryptDataKey'),
    reEncrypt: timed('reEncrypt'),
    resolveKeyId: timed('resolveKeyId'),
  };
}

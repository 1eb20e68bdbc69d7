// The AWS KMS provider against moto behind a proxy that is cut: cached data keys keep the compiled vault serving,
// what needs the KMS answers 503 kms_unavailable, and the same process recovers when the proxy returns.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { ensureBuilt } from '../support/build';
import { REPO_ROOT } from '../support/env';
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';
import { startKmsProxy, type KmsProxy } from '../support/kms-proxy';
import { createSymmetricKey, startMoto, TEST_CREDENTIALS, TEST_REGION, type MotoServer } from '../support/moto';
import { newPan } from '../support/pans';
import { call, detokenize, tokenize, type Answer } from './support/client';
import { baseEnv, devKeys, removeScratchDirs, scratchDataDir, startVault, watching, type VaultProcess } from './support/vault-process';

jest.setTimeout(120_000);

let fresh: FreshDatabase;
let moto: MotoServer;
let proxy: KmsProxy;
let vault: VaultProcess;
let env: Record<string, string>;
let dataDir: string;

beforeAll(async () => {
  await ensureBuilt();
  fresh = await freshDatabase('cardvault_fault_kms');
  moto = await startMoto();
  proxy = await startKmsProxy(moto.endpoint);
  const key = await createSymmetricKey(moto.endpoint);
  dataDir = scratchDataDir('kms');
  const base = baseEnv(dataDir);
  delete base.LOCAL_KMS_KEY_FILE;
  env = {
    ...base,
    DATABASE_URL: fresh.url,
    RATE_LIMITS: 'off',
    KMS_PROVIDER: 'aws',
    KMS_KEY_ID: key.arn,
    AWS_REGION: TEST_REGION,
    AWS_ENDPOINT_URL_KMS: proxy.endpoint,
    AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  vault = await startVault('kms-outage', env);
}, 180_000);
afterAll(async () => {
  await vault?.stop();
  removeScratchDirs();
  await proxy?.stop();
  await moto?.stop();
  await fresh?.drop();
});

/** `cardvault <args>` as an operator runs it, same environment as the server; its one JSON line. */
async function cardvault(...args: string[]): Promise<Record<string, string>> {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'dist', 'cli.js'), ...args], { env, cwd: REPO_ROOT });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, string>;
}

function expectKmsUnavailable(res: Answer): void {
  expect(res.status).toBe(503);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body.code).toBe('kms_unavailable');
  expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
}

it('serves from cached data keys while KMS is unreachable, answers 503 kms_unavailable for a new one, and recovers without a restart', () =>
  watching(vault, async () => {
    const warm = devKeys(dataDir);
    // A tenant the running vault has never used: its fingerprint key is wrapped in the database, not cached in the process.
    await cardvault('tenants', 'create', 'coldtenant');
    const cold = (await cardvault('keys', 'create', '--tenant', 'coldtenant', '--role', 'merchant')).api_key!;

    const vaulted = await Promise.all([newPan(), newPan(), newPan()].map(async (pan) => ({ pan, res: await tokenize(vault.url, warm.merchant, pan) })));
    for (const { res } of vaulted) expect(res.status).toBe(201);
    expect((await detokenize(vault.url, warm.payments, vaulted[0]!.res.body.token as string)).status).toBe(200);

    await proxy.down();
    // Cached keys: every card already vaulted still detokenizes, and a new card is sealed under the cached key.
    for (const { pan, res } of vaulted) {
      const revealed = await detokenize(vault.url, warm.payments, res.body.token as string);
      expect(revealed.status).toBe(200);
      expect(revealed.body.card.number).toBe(pan);
    }
    const sealedDuringOutage = newPan();
    const created = await tokenize(vault.url, warm.merchant, sealedDuringOutage);
    expect(created.status).toBe(201);
    // Needs the KMS: the cold tenant's keys were never unwrapped in this process.
    const refused = await tokenize(vault.url, cold, newPan());
    expectKmsUnavailable(refused);
    expect((await call(vault.url, 'GET', '/healthz')).status).toBe(200);
    expect(vault.alive()).toBe(true);

    await proxy.up();
    const coldPan = newPan();
    const recovered = await tokenize(vault.url, cold, coldPan);
    expect(recovered.status).toBe(201);
    expect((await detokenize(vault.url, warm.payments, created.body.token as string)).body.card.number).toBe(sealedDuringOutage);
    expect(vault.alive()).toBe(true);

    process.stdout.write(
      `fault KMS down: ${vaulted.length} cached-key detokenizes and 1 tokenize served with the KMS unreachable, ` +
        `a tenant needing a new data key got 503 kms_unavailable (Retry-After ${refused.headers['retry-after']}), recovered without a restart\n`,
    );
  }));

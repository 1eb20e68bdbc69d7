// loadConfig: defaults, the database and KMS switches, every problem reported by name at once, production refusals.
import path from 'node:path';
import { ConfigError, loadConfig, type Config } from '../../src/config';

const CWD = '/srv/cardvault';
const PRODUCTION = {
  NODE_ENV: 'production',
  DATABASE_URL: 'postgres://vault@db.internal:5432/vault',
  KMS_PROVIDER: 'aws',
  KMS_KEY_ID: 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
};

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env, CWD);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected loadConfig to throw a ConfigError');
}

describe('loadConfig defaults', () => {
  const config = loadConfig({}, CWD);

  it('listens on 0.0.0.0:8080 at level info in development', () => {
    expect(config.env).toBe('development');
    expect(config.host).toBe('0.0.0.0');
    expect(config.port).toBe(8080);
    expect(config.logLevel).toBe('info');
  });

  it('uses the embedded database under <cwd>/.vault/pgdata', () => {
    expect(config.dataDir).toBe(path.join(CWD, '.vault'));
    expect(config.database).toEqual({ kind: 'embedded', dataDir: path.join(CWD, '.vault', 'pgdata') });
  });

  it('uses the local KMS with its key file under <cwd>/.vault', () => {
    expect(config.kms).toEqual({ provider: 'local', keyFile: path.join(CWD, '.vault', 'local-kms.key') });
  });

  it('turns on development credentials and migrating on start', () => {
    expect(config.devCredentials).toBe(true);
    expect(config.migrateOnStart).toBe(true);
  });

  it('lets a migration wait 5 s for a table lock, and reads MIGRATION_LOCK_TIMEOUT_MS (0: for ever)', () => {
    expect(config.migrationLockTimeoutMs).toBe(5000);
    expect(loadConfig({ MIGRATION_LOCK_TIMEOUT_MS: '0' }, CWD).migrationLockTimeoutMs).toBe(0);
  });

  it('reads the shipped policies/ directory whatever the working directory', () => {
    expect(config.policiesDir).toBe(path.resolve(__dirname, '..', '..', 'policies'));
  });

  it('has bounded data-key limits and no Redis', () => {
    expect(config.dataKeys).toEqual({ maxAgeSeconds: 3600, maxUses: 1_000_000, cacheEntries: 10_000 });
    expect(config.redisUrl).toBeUndefined();
  });

  it('reads only the env it is given, never process.env', () => {
    const saved = process.env.PORT;
    process.env.PORT = '9999';
    try {
      expect(loadConfig({}, CWD).port).toBe(8080);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });

  it('treats a blank value as unset', () => {
    const blank = loadConfig({ PORT: '   ', DATABASE_URL: '', KMS_PROVIDER: ' ' }, CWD);
    expect(blank.port).toBe(8080);
    expect(blank.database.kind).toBe('embedded');
    expect(blank.kms.provider).toBe('local');
  });

  it('resolves VAULT_DATA_DIR and LOCAL_KMS_KEY_FILE against the working directory', () => {
    const custom = loadConfig({ VAULT_DATA_DIR: 'state', LOCAL_KMS_KEY_FILE: 'keys/master.key' }, CWD);
    expect(custom.database).toEqual({ kind: 'embedded', dataDir: path.join(CWD, 'state', 'pgdata') });
    expect(custom.kms).toEqual({ provider: 'local', keyFile: path.join(CWD, 'keys', 'master.key') });
  });
});

describe('loadConfig switches', () => {
  it('switches to PostgreSQL when DATABASE_URL is set, with a default pool of 20', () => {
    const url = 'postgresql://vault@127.0.0.1:5432/vault';
    expect(loadConfig({ DATABASE_URL: url }, CWD).database).toEqual({ kind: 'postgres', url, poolSize: 20 });
    expect(loadConfig({ DATABASE_URL: url, DATABASE_POOL_SIZE: '5' }, CWD).database).toEqual({ kind: 'postgres', url, poolSize: 5 });
  });

  it('uses AWS KMS with KMS_KEY_ID, AWS_REGION and AWS_ENDPOINT_URL_KMS', () => {
    const config = loadConfig(
      { KMS_PROVIDER: 'aws', KMS_KEY_ID: 'alias/cardvault', AWS_REGION: 'eu-west-1', AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:4566' },
      CWD,
    );
    expect(config.kms).toEqual({ provider: 'aws', keyId: 'alias/cardvault', region: 'eu-west-1', endpoint: 'http://127.0.0.1:4566' });
  });

  it('leaves region and endpoint to the SDK when they are not set', () => {
    expect(loadConfig({ KMS_PROVIDER: 'aws', KMS_KEY_ID: 'alias/cardvault' }, CWD).kms).toEqual({
      provider: 'aws',
      keyId: 'alias/cardvault',
      region: undefined,
      endpoint: undefined,
    });
  });

  it('requires KMS_KEY_ID when KMS_PROVIDER=aws', () => {
    expect(configError({ KMS_PROVIDER: 'aws' }).problems).toEqual(['KMS_KEY_ID is required when KMS_PROVIDER=aws']);
  });

  it('takes TRUST_PROXY as a hop count and refuses true, which would trust a forged X-Forwarded-For', () => {
    expect(loadConfig({ TRUST_PROXY: '2' }, CWD).trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: 'false' }, CWD).trustProxy).toBe(false);
    expect(configError({ TRUST_PROXY: 'true' }).problems).toEqual([
      'TRUST_PROXY must be false or the number of proxy hops in front of the vault (1-9)',
    ]);
  });

  it('serves the demo checkout on 8081 outside production, not when DEMO_PORT=off, and refuses it in production', () => {
    expect(loadConfig({}, CWD).demoPort).toBe(8081);
    expect(loadConfig({ DEMO_PORT: 'off' }, CWD).demoPort).toBeUndefined();
    expect(loadConfig({ DEMO_PORT: '9000' }, CWD).demoPort).toBe(9000);
    expect(configError({ DEMO_PORT: 'eighty' }).problems[0]).toMatch(/DEMO_PORT/);
    const production = { NODE_ENV: 'production', DATABASE_URL: 'postgres://db/vault', KMS_PROVIDER: 'aws', KMS_KEY_ID: 'k' };
    expect(loadConfig(production, CWD).demoPort).toBeUndefined();
    expect(configError({ ...production, DEMO_PORT: '8081' }).problems[0]).toMatch(/DEMO_PORT/);
  });

  it('serves metrics on 0.0.0.0:9464 unless METRICS_PORT=off, and never on the API port', () => {
    expect(loadConfig({}, CWD).metrics).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(loadConfig({ METRICS_PORT: '0', METRICS_HOST: '127.0.0.1' }, CWD).metrics).toEqual({ host: '127.0.0.1', port: 0 });
    expect(loadConfig({ METRICS_PORT: 'off' }, CWD).metrics).toBeUndefined();
    expect(loadConfig({ PORT: '0', METRICS_PORT: '0' }, CWD).metrics?.port).toBe(0);
    expect(configError({ METRICS_PORT: 'ninety' }).problems).toEqual(['METRICS_PORT must be an integer from 0 to 65535']);
    expect(configError({ METRICS_PORT: '65536' }).problems[0]).toMatch(/^METRICS_PORT /);
    expect(configError({ PORT: '9000', METRICS_PORT: '9000' }).problems).toEqual(['METRICS_PORT must differ from PORT: metrics are never served on the API port']);
    expect(configError({ PORT: '9464' }).problems[0]).toMatch(/^METRICS_PORT must differ from PORT/);
  });

  it('parses booleans and integers', () => {
    const config = loadConfig({ TRUST_PROXY: '1', MIGRATE_ON_START: 'false', PORT: '0', IDEMPOTENCY_TTL_HOURS: '48' }, CWD);
    expect(config.trustProxy).toBe(1);
    expect(config.migrateOnStart).toBe(false);
    expect(config.port).toBe(0);
    expect(config.idempotencyTtlSeconds).toBe(48 * 3600);
  });
});

describe('loadConfig problems', () => {
  // [variable, invalid value, extra env the variable needs to be read]
  const invalid: Array<[string, string, Record<string, string>?]> = [
    ['NODE_ENV', 'prod'],
    ['PORT', 'eighty'],
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['PORT', '0x50'],
    ['PORT', '1e3'],
    ['LOG_LEVEL', 'loud'],
    ['KMS_PROVIDER', 'gcp'],
    ['DATABASE_URL', 'mysql://vault@db/vault'],
    ['DATABASE_POOL_SIZE', '0', { DATABASE_URL: 'postgres://db/vault' }],
    ['BODY_LIMIT_BYTES', '1023'],
    ['TRUST_PROXY', 'yes'],
    ['API_KEY_CACHE_SECONDS', '301'],
    ['IDEMPOTENCY_TTL_HOURS', '23'],
    ['DATA_KEY_MAX_AGE_SECONDS', '0'],
    ['DATA_KEY_MAX_USES', 'many'],
    ['DATA_KEY_CACHE_ENTRIES', '1000001'],
    ['MIGRATE_ON_START', 'sometimes'],
    ['MIGRATION_LOCK_TIMEOUT_MS', '-1'],
    ['MIGRATION_LOCK_TIMEOUT_MS', '600001'],
  ];

  it.each(invalid)('reports %s=%s by name, as a ConfigError', (name, value, extra = {}) => {
    const err = configError({ ...extra, [name]: value });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]!.startsWith(`${name} `)).toBe(true);
    expect(err.message).toContain(err.problems[0]);
  });

  it('reports every problem at once, each by its variable name', () => {
    const env = {
      NODE_ENV: 'prod',
      PORT: 'eighty',
      LOG_LEVEL: 'loud',
      DATABASE_URL: 'mysql://vault@db/vault',
      DATABASE_POOL_SIZE: '0',
      KMS_PROVIDER: 'aws',
      TRUST_PROXY: 'yes',
      DATA_KEY_MAX_USES: '0',
      MIGRATE_ON_START: 'sometimes',
    };
    const err = configError(env);
    const named = ['NODE_ENV', 'PORT', 'LOG_LEVEL', 'DATABASE_URL', 'DATABASE_POOL_SIZE', 'KMS_KEY_ID', 'TRUST_PROXY', 'DATA_KEY_MAX_USES', 'MIGRATE_ON_START'];
    expect(err.problems).toHaveLength(named.length);
    for (const name of named) expect(err.problems.filter((p) => p.startsWith(`${name} `))).toHaveLength(1);
  });

  it('never echoes a value, so a password in DATABASE_URL stays out of the message', () => {
    const err = configError({ DATABASE_URL: 'mysql://vault:hunter2-s3cret@db/vault', PORT: 'port-9z-bogus' });
    expect(err.message).not.toContain('hunter2-s3cret');
    expect(err.message).not.toContain('port-9z-bogus');
    expect(err.problems.join('\n')).not.toContain('hunter2-s3cret');
  });
});

describe('loadConfig in production', () => {
  it('refuses the embedded database and the local key file, naming DATABASE_URL and KMS_PROVIDER', () => {
    const err = configError({ NODE_ENV: 'production' });
    expect(err.problems).toHaveLength(2);
    expect(err.problems.some((p) => p.startsWith('DATABASE_URL ') && p.includes('production'))).toBe(true);
    expect(err.problems.some((p) => p.startsWith('KMS_PROVIDER=local ') && p.includes('production'))).toBe(true);
  });

  it('refuses the embedded database even with AWS KMS configured', () => {
    const err = configError({ ...PRODUCTION, DATABASE_URL: undefined });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^DATABASE_URL /);
  });

  it('refuses the local key file even with PostgreSQL configured, and even when LOCAL_KMS_KEY_FILE is set', () => {
    const err = configError({ NODE_ENV: 'production', DATABASE_URL: PRODUCTION.DATABASE_URL, LOCAL_KMS_KEY_FILE: '/etc/vault/key' });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^KMS_PROVIDER=local /);
  });

  it('accepts PostgreSQL with AWS KMS, without development credentials or migrating on start', () => {
    const config = loadConfig(PRODUCTION, CWD);
    expect(config.env).toBe('production');
    expect(config.database).toEqual({ kind: 'postgres', url: PRODUCTION.DATABASE_URL, poolSize: 20 });
    expect(config.kms).toMatchObject({ provider: 'aws', keyId: PRODUCTION.KMS_KEY_ID });
    expect(config.devCredentials).toBe(false);
    expect(config.migrateOnStart).toBe(false);
  });

  it('refuses a plaintext KMS endpoint in production, where its answers carry plaintext data keys, and takes https', () => {
    for (const endpoint of ['http://kms.internal:4566', 'kms.eu-west-1.amazonaws.com']) {
      const err = configError({ ...PRODUCTION, AWS_ENDPOINT_URL_KMS: endpoint });
      expect(err.problems).toEqual([expect.stringMatching(/^AWS_ENDPOINT_URL_KMS must be an https:\/\/ URL in production/)]);
    }
    const vpce = 'https://vpce-0abc-kms.eu-west-1.vpce.amazonaws.com';
    expect(loadConfig({ ...PRODUCTION, AWS_ENDPOINT_URL_KMS: vpce }, CWD).kms).toMatchObject({ endpoint: vpce });
    // Outside production the tests' moto listens on http://127.0.0.1.
    expect(loadConfig({ ...PRODUCTION, NODE_ENV: 'test', AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:5000' }, CWD).kms).toMatchObject({ endpoint: 'http://127.0.0.1:5000' });
  });

  it('migrates on start in production only when MIGRATE_ON_START says so', () => {
    expect(loadConfig({ ...PRODUCTION, MIGRATE_ON_START: 'true' }, CWD).migrateOnStart).toBe(true);
  });

  it('lets hosted-form sessions list http://localhost and http://127.0.0.1 origins outside production only', () => {
    expect(loadConfig(PRODUCTION, CWD).clientSessions).toEqual({ allowLocalHttpOrigins: false });
    for (const env of ['development', 'test']) expect(loadConfig({ NODE_ENV: env }, CWD).clientSessions).toEqual({ allowLocalHttpOrigins: true });
  });

  it('keeps development credentials in test, where NODE_ENV=test is not production', () => {
    const config = loadConfig({ NODE_ENV: 'test' }, CWD);
    expect(config.devCredentials).toBe(true);
    expect(config.migrateOnStart).toBe(true);
  });
});

describe('the loaded config', () => {
  it('is frozen at the top level', () => {
    const config = loadConfig(PRODUCTION, CWD);
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as Config).port = 1;
    }).toThrow(TypeError);
  });

  it('is frozen in its nested database, kms and dataKeys sections too', () => {
    const config = loadConfig(PRODUCTION, CWD);
    expect(Object.isFrozen(config.database)).toBe(true);
    expect(Object.isFrozen(config.kms)).toBe(true);
    expect(Object.isFrozen(config.dataKeys)).toBe(true);
  });
});

// A moto_server child process per suite, the KMS the integration tests drive through the real SDK.
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { freePort } from './free-port';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';

export const TEST_REGION = 'us-east-1';
export const TEST_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

export interface MotoServer {
  endpoint: string;
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 3_000;

/**
 * Moto takes seconds to bind the free port it is given; another suite's server may take the port first. Then
 * moto exits at once (address in use), and it is started again on another port.
 */
export async function startMoto(): Promise<MotoServer> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startMotoOn(await freePort());
    } catch (err) {
      if (!(err instanceof MotoExited) || attempt >= 3) throw err;
    }
  }
}

class MotoExited extends Error {}

async function startMotoOn(port: number): Promise<MotoServer> {
  // Its own process group, so stop() also reaches anything the pyenv shim or moto forks.
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // moto logs every request to stderr; an unread pipe would fill and stall it. The tail explains a failed start.
  let stderrTail = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-2000);
  });
  child.once('error', (err) => {
    stderrTail += `\n${err.message}`;
  });
  const killOnExit = (): void => killGroup(child, 'SIGKILL');
  process.once('exit', killOnExit);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    killGroup(child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };

  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(endpoint, child, () => stderrTail);
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint, stop };
}

/** Creates a symmetric encryption key in moto (or any KMS at endpoint) and returns how to name it. */
export async function createSymmetricKey(endpoint: string): Promise<{ keyId: string; arn: string }> {
  const client = new KMSClient({ endpoint, region: TEST_REGION, credentials: TEST_CREDENTIALS });
  try {
    const out = await client.send(
      new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT', Description: 'cardvault test' }),
    );
    const keyId = out.KeyMetadata?.KeyId;
    const arn = out.KeyMetadata?.Arn;
    if (!keyId || !arn) throw new Error('CreateKey returned no key id');
    return { keyId, arn };
  } finally {
    client.destroy();
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is already gone.
  }
}


async function waitForHttp(endpoint: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
      throw new MotoExited(`moto_server did not start (${child.exitCode ?? child.signalCode}): ${stderr()}`);
    }
    if (await answers(endpoint)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`moto_server did not answer on ${endpoint} within ${STARTUP_TIMEOUT_MS} ms: ${stderr()}`);
}

/** Moto's own API answers 200 here; any other server that took the port first (a vault answers 404) does not. */
function answers(endpoint: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${endpoint}/moto-api/data.json`, { method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
    req.end();
  });
}

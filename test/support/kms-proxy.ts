// The KMS-protocol test server: a loopback proxy in front of moto that fakes throttling, hangs and outages.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface KmsProxy {
  /** Where the SDK under test should point; stable across down()/up(). */
  readonly endpoint: string;
  /** Requests that reached the proxy, whatever it answered. */
  readonly requestCount: number;
  /** Pass every request through to moto unchanged (the default). */
  forward(): void;
  /** Answer the next n requests as KMS does when over its request quota. */
  throttle(n: number): void;
  /** Accept requests and never answer them, as a wedged KMS or a black-holed route would. */
  stall(): void;
  /** Stop listening and cut every open connection: new connections are refused. */
  down(): Promise<void>;
  /** Listen again on the same port; a no-op while listening. */
  up(): Promise<void>;
  stop(): Promise<void>;
}

const THROTTLE_BODY = JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' });

export async function startKmsProxy(target: string): Promise<KmsProxy> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  let mode: 'forward' | 'stall' = 'forward';
  let throttleRemaining = 0;
  let requestCount = 0;

  const server = createServer((req, res) => {
    requestCount += 1;
    if (throttleRemaining > 0) {
      throttleRemaining -= 1;
      answerThrottled(req, res);
    } else if (mode === 'forward') {
      pass(req, res, upstream);
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      if (server.listening) return resolve();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
  const close = (): Promise<void> => {
    if (!server.listening) return Promise.resolve();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    return closed;
  };

  await listen(0);
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the KMS proxy has no port');
  const port = address.port;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    get requestCount() {
      return requestCount;
    },
    forward() {
      mode = 'forward';
      throttleRemaining = 0;
    },
    throttle(n: number) {
      throttleRemaining = n;
    },
    stall() {
      mode = 'stall';
    },
    down: close,
    up: () => listen(port),
    stop: close,
  };
}

function answerThrottled(req: IncomingMessage, res: ServerResponse): void {
  // Drain the body first so the keep-alive connection stays usable for the SDK's retry.
  req.resume();
  req.once('end', () => {
    res.writeHead(400, {
      'content-type': 'application/x-amz-json-1.1',
      'x-amzn-ErrorType': 'ThrottlingException',
      'x-amzn-RequestId': 'kms-proxy-throttle',
      'content-length': Buffer.byteLength(THROTTLE_BODY),
    });
    res.end(THROTTLE_BODY);
  });
}

function pass(req: IncomingMessage, res: ServerResponse, upstream: URL): void {
  const outbound = request(
    {
      hostname: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  outbound.once('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(outbound);
}

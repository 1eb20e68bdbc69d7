// A loopback TCP proxy that can black-hole its connections: bytes swallowed, nothing closed, as a partition does.
import { createConnection, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  /** Swallow every byte in both directions, on open connections and new ones, without closing anything. */
  blackHole(): void;
  /** Forward again (the default). Bytes swallowed meanwhile stay lost. */
  forward(): void;
  stop(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let swallowing = false;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // A reset from one side is passed on as a close of the other, never thrown.
    socket.on('error', () => undefined);
  };
  const relay = (from: Socket, to: Socket) => {
    from.on('data', (chunk: Buffer) => {
      if (!swallowing) to.write(chunk);
    });
    from.once('close', () => to.destroy());
  };

  const server = createServer((client) => {
    const upstream = createConnection(target);
    track(client);
    track(upstream);
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the TCP proxy has no port');

  return {
    port: address.port,
    blackHole() {
      swallowing = true;
    },
    forward() {
      swallowing = false;
    },
    stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      return closed;
    },
  };
}

// The bench's floor: each stand-in answers the bench's detokenize request, and a wrong answer counts as an error.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Pool } from 'undici';
import { STAND_IN_KINDS, startStandIn } from '../../src/bench/stand-in';
import { openClient, send, StandInWorkload } from '../../src/bench/workload';
import { closeNow } from '../../src/http/server';

const servers: http.Server[] = [];
const clients: Pool[] = [];

async function clientFor(server: http.Server): Promise<Pool> {
  servers.push(server);
  const client = openClient((server.address() as AddressInfo).port, 2);
  clients.push(client);
  return client;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.destroy()));
  await Promise.all(servers.splice(0).map(closeNow));
});

describe('bench stand-ins', () => {
  it.each(STAND_IN_KINDS)('the %s stand-in answers the detokenize request and its readiness probe', async (kind) => {
    const client = await clientFor(await startStandIn(kind, '127.0.0.1', 0));
    const workload = new StandInWorkload(client, 'stand-in-key');
    for (let i = 0; i < 3; i++) expect(await workload.run('detokenize')).toBeUndefined();
    expect((await send(client, 'GET', '/readyz')).status).toBe(200);
  });

  it.each(STAND_IN_KINDS)('the %s stand-in refuses a body that is not JSON', async (kind) => {
    const client = await clientFor(await startStandIn(kind, '127.0.0.1', 0));
    const reply = await send(client, 'POST', '/v1/tokens/4111119264401111/detokenize', 'stand-in-key', '{"purpose":');
    expect(reply.status).toBe(400);
  });

  it('counts a reply that is not the stand-in answer as a failure', async () => {
    const wrong = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"4111119264401111"}');
    });
    await new Promise<void>((resolve) => wrong.listen(0, '127.0.0.1', resolve));
    const client = await clientFor(wrong);
    expect(await new StandInWorkload(client, 'stand-in-key').run('detokenize')).toBe('detokenize 200 stand-in');
  });

  it('names a connection failure without any reply text', async () => {
    const closed = await startStandIn('node', '127.0.0.1', 0);
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const client = openClient(port, 1);
    clients.push(client);
    expect(await new StandInWorkload(client, 'stand-in-key').run('detokenize')).toBe('detokenize client ECONNREFUSED');
  });
});

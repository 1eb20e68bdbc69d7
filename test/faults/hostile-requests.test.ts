// Hostile requests against the compiled vault: header injection, path traversal, malformed HTTP, slow clients.
// Each gets a 4xx or a closed connection; the process never crashes or answers 5xx, and no card is written.
import net from 'node:net';
import { call, detokenize, rawExchange } from './support/client';
import { Tally } from './support/load';
import { card, hostileTarget, http } from './support/hostile-target';
import { sleep, watching } from './support/vault-process';

jest.setTimeout(120_000);

let slowSockets = 0;
const t = hostileTarget('hostile-requests', () => `; ${slowSockets} slow sockets held open while other clients were served`);

it('does not let CR/LF, NUL or non-ASCII in X-Request-Id and Idempotency-Key inject headers or slip past validation', () =>
  watching(t.vault, async () => {
    const auth = `Authorization: Bearer ${t.keys.merchant}`;
    const invalid = '{}';
    // The hostile header goes last, as bytes: no client library would send it.
    const rawPost = (header: string, body = invalid) => {
      const head = `POST /v1/tokens HTTP/1.1\r\nHost: v\r\n${auth}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n`;
      return rawExchange(t.vault.port, Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(header, 'latin1'), Buffer.from(`\r\n\r\n${body}`)]));
    };
    const parserLevel: Array<[string, string]> = [
      ['X-Request-Id bare LF', 'X-Request-Id: abcdefghij\nSet-Cookie: injected=1'],
      ['X-Request-Id bare CR', 'X-Request-Id: abcdefghij\rSet-Cookie: injected=1'],
      ['Idempotency-Key bare LF', 'Idempotency-Key: k1\nSet-Cookie: injected=1'],
      ['Idempotency-Key bare CR', 'Idempotency-Key: k1\rSet-Cookie: injected=1'],
      ['Idempotency-Key obs-fold', 'Idempotency-Key: k1\r\n Set-Cookie: injected=1'],
      ['Idempotency-Key NUL', 'Idempotency-Key: k1\u0000Set-Cookie: injected=1'],
      ['X-Request-Id NUL', 'X-Request-Id: abcdefgh\u0000injected'],
      ['Idempotency-Key DEL', 'Idempotency-Key: k\u007finjected'],
    ];
    for (const [name, header] of parserLevel) t.expectRawRefused(name, await rawPost(header));
    // Headers the parser accepts: the vault's own rules refuse them, and a valid card is still not written.
    const vaultLevel: Array<[string, string]> = [
      ['Idempotency-Key non-ASCII', `Idempotency-Key: ${Buffer.from('ключ-injected', 'utf8').toString('latin1')}`],
      ['Idempotency-Key with a space', 'Idempotency-Key: a injected'],
      ['Idempotency-Key 256 characters', `Idempotency-Key: ${'k'.repeat(256)}`],
      ['Idempotency-Key tab', 'Idempotency-Key: k\tinjected'],
    ];
    for (const [name, header] of vaultLevel) {
      const res = await rawPost(header, JSON.stringify(card()));
      t.expectRawRefused(name, res);
      expect({ name, status: res.status, code: /"code":"(\w+)"/.exec(res.raw)?.[1] }).toEqual({ name, status: 400, code: 'invalid_idempotency_key' });
    }
    // A request id that could carry a card number, or markup, is replaced, never echoed.
    for (const id of [t.control.pan, '<script>alert(1)</script>', '../../etc/passwd']) {
      const res = await call(t.vault.url, 'POST', '/v1/tokens', { key: t.keys.merchant, body: {}, headers: { 'x-request-id': id } });
      t.expectRefused(`X-Request-Id ${id.length}`, res);
      expect(res.headers['x-request-id']).not.toBe(id);
      expect(res.headers['x-request-id']).toMatch(/^[A-Za-z0-9._-]{8,64}$/);
    }
    t.expectRawRefused('CRLF in the path', await rawExchange(t.vault.port, http([`GET /v1/tokens/abc\r\nSet-Cookie: injected=1 HTTP/1.1`, 'Host: v', auth, 'Connection: close'])));
    t.expectRawRefused('encoded CRLF in the path', await rawExchange(t.vault.port, http(['GET /v1/tokens/abc%0d%0aSet-Cookie:%20injected=1 HTTP/1.1', 'Host: v', auth, 'Connection: close'])));
    await t.expectUnharmed();
  }));

it('answers malformed percent-encoding in a token id (overlong UTF-8, lone %, invalid bytes) with a 4xx', () =>
  watching(t.vault, async () => {
    for (const path of ['/v1/tokens/%c0%ae%c0%ae%c0%afetc%c0%afpasswd', '/v1/tokens/%ff%fe', '/v1/tokens/%', `/v1/tokens/%E0%A4%A/detokenize`]) {
      t.expectRefused(`GET ${path}`, await call(t.vault.url, 'GET', path, { key: t.keys.merchant }));
    }
    await t.expectUnharmed();
  }));

it('answers path traversal in token ids and asset paths (encoded, double-encoded, overlong) with a 4xx and no file', () =>
  watching(t.vault, async () => {
    const paths = [
      '/v1/tokens/..%2f..%2fetc%2fpasswd', '/v1/tokens/..%252f..%252fetc%252fpasswd', '/v1/tokens/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
      '/v1/tokens/%2e%2e%252f%2e%2e%252fetc%252fpasswd', '/v1/tokens/../../etc/passwd', '/v1/tokens/..%5c..%5cwindows%5cwin.ini',
      '/v1/tokens/..%00/detokenize',
      '/v1/tokens/..%2f..%2f.vault%2fcredentials.json', '/hosted/sdk/..%2f..%2f..%2fpackage.json', '/hosted/sdk/..%252f..%252fpackage.json',
      '/hosted/../package.json', '/hosted/sdk/%2e%2e%2f%2e%2e%2f.vault%2fcredentials.json', '/hosted/sdk/..%2f..%2f..%2f..%2fetc%2fpasswd',
      '/openapi.json/..%2f..%2fpackage.json', '//etc/passwd', '/v1/../../../etc/passwd', '/.vault/credentials.json', '/policies/admin.yaml',
    ];
    for (const path of paths) {
      t.expectRefused(`GET ${path}`, await call(t.vault.url, 'GET', path, { key: t.keys.merchant }));
      // Authenticated: twenty failed authentications would close /v1 to this address for a minute.
      t.expectRawRefused(`raw GET ${path}`, await rawExchange(t.vault.port, http([`GET ${path} HTTP/1.1`, 'Host: v', `Authorization: Bearer ${t.keys.merchant}`, 'Connection: close'])));
    }
    await t.expectUnharmed();
  }));

it('refuses malformed HTTP (smuggling, bad chunking, huge headers, TLS bytes) with 400/431 or by closing', () =>
  watching(t.vault, async () => {
    const auth = `Authorization: Bearer ${t.keys.merchant}`;
    const body = JSON.stringify(card());
    const requests: Array<[string, string | Buffer]> = [
      ['CL and TE', http(['POST /v1/tokens HTTP/1.1', 'Host: v', auth, 'Content-Type: application/json', `Content-Length: ${body.length}`, 'Transfer-Encoding: chunked', 'Connection: close'], body)],
      ['two Content-Lengths', http(['POST /v1/tokens HTTP/1.1', 'Host: v', auth, 'Content-Type: application/json', `Content-Length: ${body.length}`, 'Content-Length: 5', 'Connection: close'], body)],
      ['bad chunk size', http(['POST /v1/tokens HTTP/1.1', 'Host: v', auth, 'Content-Type: application/json', 'Transfer-Encoding: chunked', 'Connection: close'], `zz\r\n${body}\r\n0\r\n\r\n`)],
      ['TE: gzip, chunked smuggle', http(['POST /v1/tokens HTTP/1.1', 'Host: v', auth, 'Content-Type: application/json', 'Transfer-Encoding: chunked, identity', 'Connection: close'], `0\r\n\r\n`)],
      ['32 KB header', http(['GET /healthz HTTP/1.1', 'Host: v', `X-Big: ${'a'.repeat(32 * 1024)}`, 'Connection: close'])],
      ['unknown method', http(['BREW /v1/tokens HTTP/1.1', 'Host: v', 'Connection: close'])],
      ['NUL in the request line', http(['GET /v1/tokens/\u0000 HTTP/1.1', 'Host: v', 'Connection: close'])],
      ['TLS ClientHello', Buffer.from('16030100a5010000a103035f1c', 'hex')],
      ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ];
    for (const [name, bytes] of requests) t.expectRawRefused(name, await rawExchange(t.vault.port, bytes));
    await t.expectUnharmed();
  }));

it('stays responsive to other clients while 200 slow clients hold half-sent requests open', () =>
  watching(t.vault, async () => {
    const sockets: net.Socket[] = [];
    const answered: string[] = [];
    const open = (preamble: string) =>
      new Promise<void>((resolve, reject) => {
        const socket = net.connect(t.vault.port, '127.0.0.1', () => {
          socket.write(preamble);
          resolve();
        });
        socket.on('data', (chunk: Buffer) => answered.push(chunk.toString('latin1').split('\r\n')[0]!));
        socket.on('error', () => undefined);
        socket.once('error', reject);
        sockets.push(socket);
      });
    // 150 never finish their headers; 50 send complete, authenticated headers and then trickle a body.
    for (let i = 0; i < 150; i++) await open('POST /v1/tokens HTTP/1.1\r\nHost: v\r\nX-Slow: ');
    for (let i = 0; i < 50; i++) {
      await open(`POST /v1/tokens HTTP/1.1\r\nHost: v\r\nAuthorization: Bearer ${t.keys.merchant}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"card":`);
    }
    const served = new Tally();
    for (let round = 0; round < 10; round++) {
      for (const socket of sockets) if (!socket.destroyed) socket.write(round < 9 ? 'a' : ' ');
      const answers = await Promise.all([
        call(t.vault.url, 'GET', '/healthz', { timeoutMs: 5000 }),
        call(t.vault.url, 'GET', `/v1/tokens/${t.control.token}`, { key: t.keys.merchant, timeoutMs: 5000 }),
        detokenize(t.vault.url, t.keys.payments, t.control.token),
        t.post(card({ exp_month: 13 })),
      ]);
      for (const res of answers) served.add(res.status);
      await sleep(300);
    }
    expect(served.toString()).toBe('200×30 400×10');
    // No slow request got through: each is still waiting, or was refused.
    expect(answered.filter((line) => !/^HTTP\/1\.1 4\d\d /.test(line))).toEqual([]);
    for (const socket of sockets) socket.destroy();
    slowSockets = sockets.length;
    await t.expectUnharmed();
  }));

// Where a webhook may not go: every spelling of an internal address, and names that resolve to one.
import type { LookupAddress } from 'node:dns';
import { isInternalAddress, isInternalHost, publicOnlyLookup } from '../../src/updater/webhooks/egress';

describe('isInternalAddress', () => {
  it.each([
    '127.0.0.1', '10.1.2.3', '172.31.255.255', '192.168.0.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '198.18.0.1', '224.0.0.1', '255.255.255.255',
    '::1', '::', '::7f00:1', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'fec0::1', 'ff02::1',
    '::ffff:127.0.0.1', '::ffff:a9fe:a9fe', '0:0:0:0:0:ffff:7f00:1', '64:ff9b::a9fe:a9fe', '64:ff9b::10.0.0.1',
    // 6to4 (2002:WWXX:YYZZ::/48 carries WW.XX.YY.ZZ) and the local-use NAT64 prefix of RFC 8215.
    '2002:7f00:1::1', '2002:a9fe:a9fe::', '2002:a00:1:5::1', '2002::1', '64:ff9b:1::a9fe:a9fe',
    // Teredo (2001:0::/32), whatever its server and (inverted) client: 10.0.0.1 as server, as client
    // (f5ff:fffe), in full spelling, and both public (65.54.227.120 serving 8.8.8.8).
    '2001:0:a00:1::1', '2001:0:4136:e378:8000:63bf:f5ff:fffe', '2001:0000:0a00:0001:0000:0000:F5FF:FFFE',
    '2001:0:4136:e378:8000:63bf:f7f7:f7f7', '2001::',
  ])('refuses %s', (address) => {
    expect(isInternalAddress(address)).toBe(true);
  });

  it.each(['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '::ffff:93.184.216.34', '64:ff9b::808:808', '2002:808:808::1', '2001:4860:4860::8888', '2001:1::1'])('allows the public %s', (address) => {
    expect(isInternalAddress(address)).toBe(false);
  });
});

describe('isInternalHost', () => {
  it.each(['localhost', 'LOCALHOST', 'localhost.', 'api.localhost', 'api.localhost.', '[::1]', '[::ffff:7f00:1]', '127.0.0.1', '[2001:0:a00:1::1]'])('refuses %s', (host) => {
    expect(isInternalHost(host)).toBe(true);
  });

  it.each(['hooks.shop.example', 'localhost.example.com', '[2606:4700:4700::1111]'])('leaves %s to the connection check', (host) => {
    expect(isInternalHost(host)).toBe(false);
  });
});

describe('publicOnlyLookup', () => {
  const resolving = (addresses: LookupAddress[]) =>
    publicOnlyLookup((_host, _options, callback) => callback(null, addresses));
  const lookup = (fn: ReturnType<typeof publicOnlyLookup>, all: boolean) =>
    new Promise<{ err: NodeJS.ErrnoException | null; address: unknown; family?: number }>((resolve) =>
      fn('hooks.shop.example', { all } as never, (err, address, family) => resolve({ err, address, family })),
    );

  it('passes on a name whose every address is public, in the form the caller asked for', async () => {
    const fn = resolving([{ address: '93.184.216.34', family: 4 }, { address: '2606:4700:4700::1111', family: 6 }]);
    expect(await lookup(fn, false)).toMatchObject({ err: null, address: '93.184.216.34', family: 4 });
    expect((await lookup(fn, true)).address).toHaveLength(2);
  });

  it('refuses a name with any internal address among its answers, or none', async () => {
    for (const addresses of [[{ address: '169.254.169.254', family: 4 }], [{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.5', family: 4 }], []]) {
      const { err } = await lookup(resolving(addresses), false);
      expect(err).toMatchObject({ code: 'EINTERNALADDRESS' });
      expect(err!.message).not.toContain('hooks.shop.example');
    }
  });

  it('refuses localhost through the system resolver', async () => {
    const { err } = await new Promise<{ err: NodeJS.ErrnoException | null }>((resolve) => publicOnlyLookup()('localhost', { all: false } as never, (e) => resolve({ err: e })));
    expect(err).toMatchObject({ code: 'EINTERNALADDRESS' });
  });
});

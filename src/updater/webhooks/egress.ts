// Where a merchant's webhook may not reach: loopback, private, link-local (cloud metadata), shared and reserved
// addresses, in every IPv6 spelling that embeds one, and Teredo tunnels outright. Checked on the URL when an endpoint is created, and on the
// address actually connected to when a delivery is sent, so a public name that resolves (or later rebinds) to an
// internal address is refused too.
import dns, { type LookupAddress, type LookupAllOptions, type LookupOneOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

const INTERNAL_V4 = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  INTERNAL_V4.addSubnet(net, prefix, 'ipv4');
}

const INTERNAL_V6 = new BlockList();
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback and the deprecated IPv4-compatible form
  // Teredo (RFC 4380): 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC tunnels to server S and (inverted) client C over IPv4,
  // either of which may be internal, through relays we do not choose. Obsolete, and no webhook endpoint is one.
  ['2001::', 32],
  ['64:ff9b:1::', 48], // local-use NAT64 (RFC 8215): translates to addresses of the operator's choosing
  ['fc00::', 7], // unique-local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated, still routed by some)
  ['ff00::', 8], // multicast
] as const) {
  INTERNAL_V6.addSubnet(net, prefix, 'ipv6');
}

/** IPv6 forms that carry an IPv4 address in their last 32 bits: mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96). */
const EMBEDS_V4 = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/;

/** 6to4 (2002::/16): the 32 bits after the prefix are the IPv4 address of the relay that carries the packet. */
const SIX_TO_FOUR = /^2002:(?:([0-9a-f]{1,4})(?::([0-9a-f]{1,4}))?)?(?::|$)/;

function embeddedV4(ipv6: string): string | undefined {
  const sixToFour = SIX_TO_FOUR.exec(ipv6.toLowerCase());
  if (sixToFour) {
    // The URL parser's spelling folds zero groups into '::', so a group not spelled is zero ('2002::1', '2002:a00::1').
    const high = parseInt(sixToFour[1] ?? '0', 16);
    const low = parseInt(sixToFour[2] ?? '0', 16);
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }
  const match = EMBEDS_V4.exec(ipv6.toLowerCase());
  if (!match) return undefined;
  if (match[1]) return match[1];
  const high = parseInt(match[2]!, 16);
  const low = parseInt(match[3]!, 16);
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/** True for an IP address a webhook must not be sent to. */
export function isInternalAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return INTERNAL_V4.check(address, 'ipv4');
  if (family !== 6) return false;
  // One spelling of each address (the URL parser's), so '0:0:0:0:0:ffff:7f00:1' is read as '::ffff:7f00:1'.
  const canonical = new URL(`http://[${address}]`).hostname.slice(1, -1);
  const v4 = embeddedV4(canonical);
  return v4 !== undefined ? INTERNAL_V4.check(v4, 'ipv4') : INTERNAL_V6.check(canonical, 'ipv6');
}

/** A URL's hostname (brackets and a final dot ignored) that names localhost or an internal IP literal. */
export function isInternalHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').replace(/\.+$/, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  return isInternalAddress(host);
}

export class InternalAddressError extends Error {
  override name = 'InternalAddressError';
  readonly code = 'EINTERNALADDRESS';
  constructor() {
    // Neither the name nor the address: the log says which delivery, the endpoint's owner knows its URL.
    super('the webhook host resolves to an internal address');
  }
}

type Resolver = (hostname: string, options: LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;
type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for net/tls connections: resolves every address of the name and refuses the connection if any is
 * internal (a name with one public and one private address could be either). The connection then goes to an
 * address this function returned, so what was checked is what is connected to.
 */
export function publicOnlyLookup(resolve: Resolver = dns.lookup as unknown as Resolver) {
  return (hostname: string, options: LookupOneOptions | LookupAllOptions, callback: LookupCallback): void => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      if (addresses.length === 0 || addresses.some((a) => isInternalAddress(a.address))) return callback(new InternalAddressError(), []);
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

/**
 * The client address of a request. Only when the peer is one of `trustedProxies` (IPs or
 * CIDRs from crowdbake.yml) is X-Forwarded-For believed: its hops are read from the right
 * (the nearest proxy appended the last one) and the first hop that is not itself a trusted
 * proxy is the client. Without trusted proxies the header is ignored, so no client can name
 * its own address.
 */
export function clientAddressResolver(trustedProxies: string[]): (req: IncomingMessage) => string {
  const peerOf = (req: IncomingMessage) => plain(req.socket.remoteAddress ?? 'unknown');
  if (trustedProxies.length === 0) return peerOf;
  const trusted = new BlockList();
  for (const entry of trustedProxies) {
    const [ip, bits] = entry.split('/') as [string, string | undefined];
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) trusted.addAddress(ip, type);
    else trusted.addSubnet(ip, Number(bits), type);
  }
  const isTrusted = (a: string) => isIP(a) !== 0 && trusted.check(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
  return (req) => {
    let client = peerOf(req);
    if (!isTrusted(client)) return client;
    const header = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : header ?? '').split(',').map((h) => plain(h.trim())).filter(Boolean);
    for (let i = hops.length - 1; i >= 0; i--) {
      client = hops[i]!;
      if (!isTrusted(client)) return client;
    }
    return client;
  };
}

/** `::ffff:10.0.0.1` → `10.0.0.1`, so an IPv4 client has one name. */
function plain(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

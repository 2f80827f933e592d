/**
 * Build source URLs (`source.git` in a builder file, `spec.source.git` in an assignment).
 *
 * A worker clones the source on the volunteer's computer, so the URL is checked against an
 * allowlist before the host touches it: only `https://`, `http://` and `git://` URLs of a
 * remote host. Everything else could make git read the volunteer's files or run programs of
 * theirs: local and relative paths and `file://` (their own repositories), scp-like
 * `host:path` and `ssh://` (their SSH keys and agent), `ext::`/`fd::` and other transports
 * (a shell command), an argument starting with `-` (an option). The master checks builder
 * files with the same rule; the worker checks every assignment again (the master may lie).
 *
 * No I/O here: whether a host name resolves to loopback is the worker's business
 * (`worker/checkout.ts`); `isLoopbackHost` only recognises literal loopback names.
 */

/** Schemes a build source may use. */
export const SOURCE_URL_SCHEMES = ['https', 'http', 'git'] as const;

const DNS_NAME = /^(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?)*\.?$/i;
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * Why `url` may not be a build's source, or null when it may. The reason is a sentence
 * fragment ("is a local path; …") meant to follow the field's name; it shows the URL with
 * credentials hidden.
 */
export function sourceUrlProblem(url: string): string | null {
  if (typeof url !== 'string' || url.length === 0) return 'must be a repository URL';
  if (url.length > 2048) return 'is longer than 2048 characters';
  if (/[\s\u0000-\u001f\u007f-\u009f]/.test(url)) return 'must not contain spaces or control characters';
  const shown = redactUrl(url);
  if (url.startsWith('-')) return `"${shown}" starts with "-" (git would read it as an option)`;
  if (url.includes('\\')) return `"${shown}" contains a backslash`;
  const only = 'only https://, http:// and git:// URLs of a remote repository are allowed';
  if (/^[a-z][a-z0-9+.-]*::/i.test(url)) return `"${shown}" names a git remote helper transport ("${url.split('::')[0]}::"); ${only}`;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (url.startsWith('/') || url.startsWith('.') || url.startsWith('~')) {
      return `"${shown}" is a local path; a build's source is fetched from a remote repository (${only})`;
    }
    if (/^(?:[^@/]+@)?[^/:]+:/.test(url)) return `"${shown}" is an scp-like ssh address (host:path); workers never use ssh keys for a build (${only})`;
    return `"${shown}" is not a URL (a relative path?); ${only}`;
  }
  if (scheme === 'file') return `"${shown}" is a local file:// URL; a build's source is fetched from a remote repository (${only})`;
  if (scheme === 'ssh' || scheme === 'git+ssh' || scheme === 'ssh+git') {
    return `"${shown}" is an ssh:// URL; workers never use ssh keys for a build (${only})`;
  }
  if (!(SOURCE_URL_SCHEMES as readonly string[]).includes(scheme)) return `"${shown}" uses the ${scheme}:// scheme; ${only}`;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `"${shown}" is not a valid URL`;
  }
  const rawHost = rawHostOf(url);
  if (!rawHost) return `"${shown}" names no host`;
  if (rawHost.startsWith('[')) {
    if (!u.hostname.startsWith('[')) return `"${shown}" has an invalid IPv6 address`;
  } else if (!(DNS_NAME.test(rawHost) && (IPV4.test(rawHost) || !/^[\d.]+$/.test(rawHost))) || u.hostname !== rawHost.toLowerCase()) {
    // Hosts like 2130706433, 0x7f.1 or 127.1 mean 127.0.0.1 to some parsers and not to others.
    return `"${shown}" has a host name git and this check could read differently ("${rawHost}"); write a DNS name or a dotted IPv4 address`;
  }
  if (u.pathname === '/' || u.pathname === '') return `"${shown}" names no repository (no path after the host)`;
  if (scheme === 'git' && (u.username || u.password)) return `"${shown}" puts credentials in a git:// URL, which has no authentication`;
  return null;
}

/** The host part of `scheme://[userinfo@]host[:port]/…` as written (IPv6 with its brackets), without the port. */
function rawHostOf(url: string): string {
  const rest = url.slice(url.indexOf('://') + 3);
  const authority = rest.split(/[/?#]/, 1)[0] ?? '';
  const hostPort = authority.slice(authority.lastIndexOf('@') + 1);
  if (hostPort.startsWith('[')) return hostPort.slice(0, hostPort.indexOf(']') + 1);
  const colon = hostPort.indexOf(':');
  return colon < 0 ? hostPort : hostPort.slice(0, colon);
}

/**
 * Whether a URL host (as `new URL().hostname` gives it) is this computer by its literal name:
 * `localhost` and its subdomains, 127.0.0.0/8, 0.0.0.0/8 (Linux connects it to loopback),
 * `::1`, `::` and IPv4-mapped forms of these.
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (IPV4.test(h)) return h.startsWith('127.') || h.startsWith('0.');
  if (!h.includes(':')) return false;
  if (h === '::1' || h === '::') return true;
  // ::ffff:a.b.c.d or, as WHATWG writes it, ::ffff:7f00:1
  const mapped = /^(?:0{0,4}:){0,5}:?ffff:(.+)$/.exec(h)?.[1];
  if (mapped) {
    if (IPV4.test(mapped)) return isLoopbackHost(mapped);
    const hi = /^([0-9a-f]{1,4}):[0-9a-f]{1,4}$/.exec(mapped)?.[1];
    if (hi !== undefined) return (parseInt(hi, 16) >> 8) === 127 || (parseInt(hi, 16) >> 8) === 0;
  }
  return false;
}

const SECRET_PARAM = /^(?:access_token|private_token|token|auth|password|passwd|pass|secret|key|api_key|apikey|sig|signature|x-oss-signature|x-amz-signature|x-amz-credential)$/i;

/**
 * A URL for showing or logging: userinfo (`user:password@`) becomes `***@`, and the values of
 * query parameters that usually hold secrets (`token`, `access_token`, `private_token`,
 * `password`, `key`, `sig`, …) become `***`. Anything that is not a `scheme://` URL is
 * returned unchanged.
 */
export function redactUrl(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/]*)(.*)$/is.exec(url);
  if (!m) return url;
  const [, scheme, authority, path] = m as unknown as [string, string, string, string];
  // The last "@" before the path ends the userinfo, also when a password holds "@", "?" or "#".
  const at = authority.lastIndexOf('@');
  const host = at < 0 ? authority : `***@${authority.slice(at + 1)}`;
  return `${scheme}${redactQuery(host + path)}`;
}

function redactQuery(rest: string): string {
  const q = rest.indexOf('?');
  if (q < 0) return rest;
  const hash = rest.indexOf('#', q);
  const query = rest.slice(q + 1, hash < 0 ? undefined : hash);
  const redacted = query.split('&').map((kv) => {
    const eq = kv.indexOf('=');
    if (eq < 0) return kv;
    let name = kv.slice(0, eq);
    try { name = decodeURIComponent(name); } catch { /* keep as written */ }
    return SECRET_PARAM.test(name) ? `${kv.slice(0, eq)}=***` : kv;
  }).join('&');
  return `${rest.slice(0, q + 1)}${redacted}${hash < 0 ? '' : rest.slice(hash)}`;
}

/** `redactUrl` applied to every `scheme://…` URL inside a text (a log line, git's stderr). */
export function redactUrls(text: string): string {
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>`]*/gi, (u) => redactUrl(u));
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isLoopbackHost, redactUrl, redactUrls, sourceUrlProblem } from './source-url.js';

test('remote https, http and git URLs are build sources', () => {
  for (const ok of [
    'https://github.com/o/r.git', 'https://GitHub.com/o/r', 'http://example.org:8080/x/y.git', 'git://git.kernel.org/pub/scm/git/git.git',
    'https://user:tok@gitlab.example/o/r.git', 'http://127.0.0.1:43123/repo', 'http://[::1]:9/r', 'https://example.org/r?x=1',
    'https://xn--bcher-kva.example/r',
  ]) assert.equal(sourceUrlProblem(ok), null, ok);
});

test('local paths, file://, ssh, scp-like, transports, options and odd hosts are refused, each saying why', () => {
  const cases: [string, RegExp][] = [
    ['../../../.password-store', /is not a URL \(a relative path\?\)|is a local path/],
    ['./repo', /is a local path/],
    ['/home/x/repo', /is a local path/],
    ['~/repo', /is a local path/],
    ['repo', /is not a URL/],
    ['file:///home/x/repo', /local file:\/\/ URL/],
    ['FILE:///etc', /local file:\/\/ URL/],
    ['ext::sh -c touch% /tmp/pwned', /spaces or control characters/],
    ['ext::sh', /remote helper transport \("ext::"\)/],
    ['fd::3', /remote helper transport/],
    ['git@github.com:o/r.git', /scp-like ssh address/],
    ['github.com:o/r', /scp-like ssh address/],
    ['ssh://git@github.com/o/r', /ssh:\/\/ URL/],
    ['git+ssh://git@github.com/o/r', /ssh:\/\/ URL/],
    ['ftp://example.org/r', /ftp:\/\/ scheme/],
    ['-uhttps://x/y', /starts with "-"/],
    ['--upload-pack=touch /tmp/x', /spaces|starts with "-"/],
    ['https://example.org/r\n', /control characters/],
    ['https://exa mple.org/r', /spaces/],
    ['https://example.org\\@evil/r', /backslash/],
    ['http://2130706433/r', /could read differently/],
    ['http://0x7f.1/r', /could read differently/],
    ['http://127.1/r', /could read differently/],
    ['https://example.org/', /names no repository/],
    ['https:///r', /names no host|not a valid URL/],
    ['git://u:p@example.org/r', /no authentication/],
    ['', /must be a repository URL/],
  ];
  for (const [url, why] of cases) {
    const p = sourceUrlProblem(url);
    assert.ok(p, `${JSON.stringify(url)} was accepted`);
    assert.match(p, why, url);
  }
  // The reason never repeats a credential.
  assert.doesNotMatch(sourceUrlProblem('ssh://me:hunter2@example.org/r')!, /hunter2/);
  assert.doesNotMatch(sourceUrlProblem('ftp://me:hunter2@example.org/r')!, /hunter2/);
});

test('loopback hosts are recognised in their literal forms', () => {
  for (const h of ['localhost', 'LOCALHOST', 'a.localhost', '127.0.0.1', '127.8.9.10', '0.0.0.0', '[::1]', '::1', '[::]', '[::ffff:7f00:1]', '::ffff:127.0.0.1', 'localhost.']) {
    assert.equal(isLoopbackHost(h), true, h);
  }
  for (const h of ['example.org', '128.0.0.1', '10.0.0.1', '[2001:db8::1]', 'localhost.example.org', '[::ffff:a00:1]']) {
    assert.equal(isLoopbackHost(h), false, h);
  }
  // What the URL parser gives for an IPv4-mapped address is recognised.
  assert.equal(isLoopbackHost(new URL('http://[::ffff:127.0.0.1]/r').hostname), true);
});

test('redactUrl hides userinfo and secret query parameters, and nothing else', () => {
  assert.equal(redactUrl('https://user:tok@example.org/o/r.git'), 'https://***@example.org/o/r.git');
  assert.equal(redactUrl('https://tok@example.org/o/r.git'), 'https://***@example.org/o/r.git');
  assert.equal(redactUrl('https://u:p@ss#w?rd@example.org/r'), 'https://***@example.org/r');
  assert.equal(redactUrl('https://example.org/r?private_token=abc&ref=main'), 'https://example.org/r?private_token=***&ref=main');
  assert.equal(redactUrl('https://example.org/r?access_token=abc#x'), 'https://example.org/r?access_token=***#x');
  assert.equal(redactUrl('https://example.org/a@b/r'), 'https://example.org/a@b/r');
  assert.equal(redactUrl('https://example.org/r'), 'https://example.org/r');
  assert.equal(redactUrl('/local/path'), '/local/path');
  assert.equal(redactUrls("fatal: unable to access 'https://me:s3cret@h.example/r/': 401\nand http://a:b@c/d too"),
    "fatal: unable to access 'https://***@h.example/r/': 401\nand http://***@c/d too");
});

test('fuzz: 20,000 generated URLs never throw; an accepted one is a remote http(s)/git URL, and its redacted form holds no password', () => {
  const part = fc.stringMatching(/^[a-zA-Z0-9@:/.?#=&%~_\\[\] -]{0,12}$/);
  const scheme = fc.constantFrom('https://', 'http://', 'git://', 'ssh://', 'file://', 'ext::', '', '-', 'HTTP://', 'git+ssh://');
  const pw = fc.stringMatching(/^[a-zA-Z0-9]{6,12}$/);
  const host = fc.oneof(fc.domain(), fc.ipV4(), part);
  const path = fc.oneof(fc.webPath().map((p) => `/r${p}`), fc.webPath(), part);
  fc.assert(fc.property(scheme, fc.option(fc.tuple(part, pw)), host, path, (s, cred, host, path) => {
    const secret = cred ? `SECRET${cred[1]}` : null;
    const url = `${s}${cred ? `${encodeURIComponent(cred[0])}:${secret}@` : ''}${host}${path}`;
    const problem = sourceUrlProblem(url);
    const shown = redactUrl(url);
    if (secret && /^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !url.slice(url.indexOf('://') + 3).split('/')[0]!.includes(secret)) return; // the secret is not in the authority
    if (problem === null) {
      const u = new URL(url);
      assert.ok(['https:', 'http:', 'git:'].includes(u.protocol), url);
      assert.ok(!url.startsWith('-') && u.hostname.length > 0, url);
      if (secret) assert.ok(!shown.includes(secret), `${url} -> ${shown}`);
    } else if (secret && /^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
      assert.ok(!problem.includes(secret), `${url}: ${problem}`);
    }
  }), { numRuns: 20_000, seed: 1414 });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseBuilderFile } from '../master/config/builder-file-loader.js';
import { baseProblem, parseBaseRef } from './base-ref.js';

const SHA = 'a'.repeat(64);

test('bases the volunteer did not choose are never host paths: allowed forms parse', () => {
  assert.deepEqual(parseBaseRef('busybox'), { kind: 'busybox' });
  assert.deepEqual(parseBaseRef('vm:busybox'), { kind: 'vm-busybox' });
  assert.deepEqual(parseBaseRef('debootstrap:bookworm'), { kind: 'debootstrap', suite: 'bookworm', mirror: null });
  assert.deepEqual(parseBaseRef('debootstrap:jammy@https://mirror.example/ubuntu/'), { kind: 'debootstrap', suite: 'jammy', mirror: 'https://mirror.example/ubuntu' });
  assert.deepEqual(parseBaseRef('image:debian:12'), { kind: 'image', ref: 'docker.io/library/debian:12' });
  assert.deepEqual(parseBaseRef('image:myorg/app'), { kind: 'image', ref: 'docker.io/myorg/app' });
  assert.deepEqual(parseBaseRef(`image:ghcr.io/o/p:1.2@sha256:${SHA}`), { kind: 'image', ref: `ghcr.io/o/p:1.2@sha256:${SHA}` });
  assert.deepEqual(parseBaseRef('image:localhost:5000/x'), { kind: 'image', ref: 'localhost:5000/x' });
  assert.deepEqual(parseBaseRef('rootfs:root.tar'), { kind: 'rootfs', file: { from: 'bases-dir', name: 'root.tar' } });
  assert.deepEqual(parseBaseRef(`rootfs:https://x.example/r.tar.gz#sha256=${SHA}`), { kind: 'rootfs', file: { from: 'url', url: 'https://x.example/r.tar.gz', sha256: SHA } });
  assert.deepEqual(parseBaseRef('vm:deb.qcow2'), { kind: 'vm-disk', file: { from: 'bases-dir', name: 'deb.qcow2' }, format: 'qcow2' });
  assert.deepEqual(parseBaseRef('vm:deb.img'), { kind: 'vm-disk', file: { from: 'bases-dir', name: 'deb.img' }, format: 'raw' });
  assert.deepEqual(parseBaseRef(`vm:http://x.example/d.qcow2#sha256=${SHA}`).kind, 'vm-disk');
});

test('host paths, transports, file:// mirrors and local images are refused, saying what to use instead', () => {
  const refused: Array<[string, RegExp]> = [
    ['rootfs:/etc/shadow.tar', /names a path on the worker.*rootfs:NAME\.tar.*--bases-dir.*#sha256=HEX/],
    ['rootfs:../../x.tar', /names a path on the worker/],
    ['rootfs:~/x.tar', /names a path on the worker/],
    ['rootfs:file:///x.tar', /names a path on the worker/],
    ['vm:/home/u/.ssh/id_ed25519.img', /names a path on the worker.*vm:NAME\.qcow2/],
    ['vm:sub/deb.qcow2', /names a path on the worker/],
    ['vm:deb.vdi', /must end in \.qcow2, \.img, \.raw/],
    ['rootfs:https://x.example/r.tar', /needs its content hash: add #sha256=HEX/],
    ['rootfs:https://x.example/r.tar#sha256=abc', /is not a sha256/],
    [`rootfs:https://u:p@x.example/r.tar#sha256=${SHA}`, /not an http\(s\) URL without credentials/],
    ['image:docker-archive:/home/u/private.tar', /podman transport that reads files or images on the worker/],
    ['image:oci-archive:/x.tar', /podman transport/],
    ['image:dir:/x', /podman transport/],
    ['image:containers-storage:secret-app', /podman transport/],
    ['image:docker://debian', /podman transport/],
    ['image:/var/lib/containers', /is a path on the worker/],
    ['image:localhost/private-app:1', /localhost\/ names images stored on the worker/],
    ['image:--privileged', /is not a registry reference/],
    ['image:Debian', /is not a registry reference/],
    ['debootstrap:x@file:///', /is a path on the worker; a builder file can name only http:\/\/ or https:\/\/ mirrors/],
    ['debootstrap:bookworm@ftp://x', /must be an http:\/\/ or https:\/\/ URL/],
    ['debootstrap:Bookworm;rm', /is not a Debian or Ubuntu suite name/],
    ['ubuntu', /is not a base \(one of busybox/],
  ];
  for (const [base, why] of refused) {
    const p = baseProblem(base);
    assert.ok(p, `${base} is refused`);
    assert.match(p, why, base);
    assert.ok(p.startsWith(`base "${base}"`), p);
  }
});

test('a builder file with a host-path base is refused naming the file and the field', () => {
  for (const [yaml, field] of [
    ['environment: { base: "rootfs:/etc/passwd.tar" }\nsteps: [{ run: "true" }]\n', 'environment.base'],
    ['steps: [{ run: "true" }]\ntest-install: { environment: { base: "vm:/home/u/key.img" }, steps: [{ run: "true" }] }\n', 'test-install.environment.base'],
    ['environment: { base: "image:docker-archive:/x.tar" }\nsteps: [{ run: "true" }]\n', 'environment.base'],
  ] as const) {
    const r = parseBuilderFile('/cfg/builders/evil.yml', yaml);
    assert.equal(r.ok, false);
    const text = JSON.stringify(r);
    assert.match(text, /evil\.yml/);
    assert.ok(text.includes(field), `${field} in ${text}`);
    assert.match(text, /base \\?"/);
  }
  assert.equal(parseBuilderFile('/cfg/builders/ok.yml', 'environment: { base: "vm:deb.qcow2" }\nsteps: [{ run: "true" }]\n').ok, true);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { builderNameFromPath, parseBuilderFile } from './builder-file-loader.js';

const CONFIG = '/etc/crowdbake';
const parse = (text: string, file = 'hello.yml') => parseBuilderFile(`${CONFIG}/builders/${file}`, text, { configDir: CONFIG });
const errorsOf = (text: string, file?: string): string[] => {
  const r = parse(text, file);
  assert.equal(r.ok, false, 'expected the file to be rejected');
  return r.ok ? [] : r.errors;
};

const FULL = `description: Build the hello package
source:
  git: https://example.org/hello.git
  branch: main
  poll: 60s
requires:
  labels: [linux]
  executor: container
environment:
  base: busybox
  setup:
    - echo setting up
network: true
steps:
  - name: build
    run: make
    timeout: 20m
    env: { CFLAGS: -O2, JOBS: 4, DEBUG: false }
  - run: [make, check]
artifacts: [dist/*.deb]
limits: { time: 1h, cpus: 2, memory: 2g, disk: 10g }
collapse: false
`;

test('a full builder file parses to the normalized definition', () => {
  const r = parse(FULL);
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  assert.deepEqual(r.builder, {
    name: 'hello',
    description: 'Build the hello package',
    source: { git: 'https://example.org/hello.git', branch: 'main', pollMs: 60_000 },
    requires: { labels: ['linux'], executor: 'container' },
    priority: 0,
    collapse: false,
    spec: {
      builder: 'hello',
      source: { git: 'https://example.org/hello.git', branch: 'main' },
      executor: 'container',
      environment: { base: 'busybox', setup: ['echo setting up'] },
      steps: [
        { name: 'build', run: 'make', timeoutMs: 20 * 60_000, env: { CFLAGS: '-O2', JOBS: '4', DEBUG: 'false' } },
        { name: 'step-2', run: ['make', 'check'], env: {} },
      ],
      artifacts: ['dist/*.deb'],
      limits: { timeMs: 3_600_000, cpus: 2, memoryBytes: 2 * 1024 ** 3, diskBytes: 10 * 1024 ** 3 },
      network: true,
      testInstall: null,
    },
  });
});

test('a minimal file gets every default; definitions do not share default arrays', () => {
  const a = parse('steps:\n  - run: make\n');
  const b = parse('steps:\n  - run: make\n', 'other.yaml');
  assert.ok(a.ok && b.ok);
  assert.deepEqual(a.builder, {
    name: 'hello',
    description: '',
    source: null,
    requires: { labels: [], executor: 'any' },
    priority: 0,
    collapse: true,
    spec: {
      builder: 'hello', source: null, executor: 'any',
      environment: { base: 'busybox', setup: [] },
      steps: [{ name: 'step-1', run: 'make', env: {} }],
      artifacts: [], limits: {}, network: false, testInstall: null,
    },
  });
  assert.equal(b.builder.name, 'other');
  assert.notEqual(a.builder.requires.labels, b.builder.requires.labels);
  assert.notEqual(a.builder.spec.environment.setup, b.builder.spec.environment.setup);
});

test('a source without branch defaults to main', () => {
  const r = parse('source: { git: https://example.org/x.git }\nsteps: [{ run: make }]\n');
  assert.ok(r.ok);
  assert.deepEqual(r.builder.source, { git: 'https://example.org/x.git', branch: 'main', pollMs: null });
});

test('a bad duration names file, line, column and key path', () => {
  const text = FULL.replace('timeout: 20m', 'timeout: 5 minutes');
  assert.deepEqual(errorsOf(text), [
    'builders/hello.yml:17:5: steps.0.timeout: "5 minutes" is not a duration (use e.g. 500ms, 30s, 5m, 2h)',
  ]);
});

test('an unknown top-level key points at its own line and names it', () => {
  assert.deepEqual(errorsOf('description: x\nstepz:\n  - run: make\n'), [
    'builders/hello.yml:1:1: missing required key "steps"',
    'builders/hello.yml:2:1: unknown key "stepz" (did you mean "steps"?)',
  ]);
});

test('an unknown nested key points at its own line and names it', () => {
  assert.deepEqual(errorsOf('steps:\n  - run: make\n    timout: 5m\nlimits:\n  cpu: 2\n  color: 1\n'), [
    'builders/hello.yml:3:5: steps.0: unknown key "timout" (did you mean "timeout"?)',
    'builders/hello.yml:5:3: limits: unknown key "cpu" (did you mean "cpus"?)',
    'builders/hello.yml:6:3: limits: unknown key "color" (allowed: time, cpus, memory, disk, pids, frozen)',
  ]);
});

test('wrong types name the line and key path', () => {
  const text = [
    'requires:',
    '  labels: linux',
    '  executor: docker',
    'network: yes',
    'steps:',
    '  - run: 5',
    '  - run: [make, 1]',
    '  - name: no run',
    'limits: { cpus: two, memory: lots }',
    'source:',
  ].join('\n');
  assert.deepEqual(errorsOf(text), [
    'builders/hello.yml:2:3: requires.labels: expected a list, got "linux"',
    'builders/hello.yml:3:3: requires.executor: expected one of "container", "vm", "host", "any", got "docker"',
    'builders/hello.yml:4:1: network: expected true or false, got "yes"',
    'builders/hello.yml:6:5: steps.0.run: expected a string or a list, got 5',
    'builders/hello.yml:7:17: steps.1.run.1: expected a string, got 1',
    'builders/hello.yml:8:5: steps.2: missing required key "run"',
    'builders/hello.yml:9:11: limits.cpus: expected a number, got "two"',
    'builders/hello.yml:9:22: limits.memory: "lots" is not a size (use e.g. 512m, 4g)',
    'builders/hello.yml:10:1: source: expected a mapping, got an empty value',
  ]);
});

test('values the build spec would reject are caught at load time', () => {
  assert.deepEqual(errorsOf('steps: [{ run: make, timeout: 0s }]\nlimits: { memory: 0 }\nsource: { poll: 0, git: https://example.org/x }\n'), [
    'builders/hello.yml:1:22: steps.0.timeout: must be a whole number of milliseconds, at least 1ms, got "0s"',
    'builders/hello.yml:2:11: limits.memory: must be a whole number of bytes, at least 1, got 0',
    'builders/hello.yml:3:11: source.poll: must be at least 1s, got 0',
  ]);
});

test('a source that is not a remote https, http or git URL is refused, naming the file, line and field', () => {
  const cases: [string, RegExp][] = [
    ['../../../.password-store', /is a local path/],
    ['/home/x/repo', /is a local path/],
    ['file:///home/x/repo', /local file:\/\/ URL/],
    ['"ext::sh -c touch% /tmp/pwned"', /spaces or control characters/],
    ['ext::sh', /remote helper transport/],
    ['git@github.com:o/r.git', /scp-like ssh address/],
    ['ssh://git@github.com/o/r', /ssh:\/\/ URL/],
  ];
  for (const [git, why] of cases) {
    const errors = errorsOf(`source:\n  git: ${git}\nsteps: [{ run: make }]\n`);
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0]!, /^builders\/hello\.yml:2:\d+: source\.git: /, errors[0]);
    assert.match(errors[0]!, why, errors[0]);
  }
  // A credential in a refused URL is not repeated in the error.
  const [e] = errorsOf('source: { git: "ssh://me:hunter2@example.org/r" }\nsteps: [{ run: make }]\n');
  assert.match(e!, /ssh:\/\/\*\*\*@example\.org\/r/);
  assert.doesNotMatch(e!, /hunter2/);
});

test('a YAML syntax error names its line', () => {
  const errors = errorsOf('description: x\nsteps:\n  - run: "unterminated\n');
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /^builders\/hello\.yml:4:1: YAML syntax error: Missing closing "quote/);
  const tabs = errorsOf('steps:\n\t- run: make\n');
  assert.match(tabs[0]!, /^builders\/hello\.yml:2:1: YAML syntax error: /);
});

test('duplicate keys are errors naming the second one', () => {
  assert.deepEqual(errorsOf('steps: [{ run: a }]\ndescription: x\nsteps: [{ run: b }]\n'), [
    'builders/hello.yml:3:1: duplicate key "steps"',
  ]);
});

test('an empty file, or one with only comments, is an error', () => {
  for (const text of ['', '\n\n', '# just a comment\n']) {
    assert.deepEqual(errorsOf(text), ['builders/hello.yml:1:1: the file is empty; a builder needs at least "steps:" with one step']);
  }
  assert.deepEqual(errorsOf('steps: []\n'), ['builders/hello.yml:1:1: steps: a builder needs at least one step']);
});

test('a top level that is not a mapping is an error', () => {
  assert.deepEqual(errorsOf('- run: make\n'), ['builders/hello.yml:1:1: the top level must be a mapping of "key: value" lines, found a list']);
  assert.deepEqual(errorsOf('make\n'), ['builders/hello.yml:1:1: the top level must be a mapping of "key: value" lines, found "make"']);
});

test('a bad builder name (from the file name) is an error, even when the content is valid', () => {
  const errors = errorsOf('steps: [{ run: make }]\n', 'hello world.yml');
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /^builders\/hello world\.yml: builder name "hello world" \(from the file name\) must be 1-64 letters/);
  assert.match(errorsOf('steps: [{ run: make }]\n', 'hello.json')[0]!, /must be named NAME\.yml or NAME\.yaml/);
});

test('without configDir, messages use the path as given', () => {
  const r = parseBuilderFile('some/where/hello.yml', 'stepz: 1\nsteps: [{ run: make }]\n');
  assert.ok(!r.ok);
  assert.match(r.errors[0]!, /^some\/where\/hello\.yml:1:1: unknown key "stepz"/);
});

test('builder names come from the file name', () => {
  assert.equal(builderNameFromPath('/x/builders/hello.yml'), 'hello');
  assert.equal(builderNameFromPath('hello.world.yaml'), 'hello.world');
  assert.equal(builderNameFromPath('hello.txt'), null);
});

test('os, arch and cpus requirements are normalized to Node\'s names', () => {
  const r = parse('requires: { os: Linux, arch: [amd64, aarch64, x64], cpus: 4 }\nsteps:\n  - run: make\n');
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  assert.deepEqual(r.builder.requires, { labels: [], executor: 'any', os: ['linux'], arch: ['x64', 'arm64'], cpus: 4 });
});

test('os and arch must be names Crowdbake knows; the error lists them', () => {
  const [osErr] = errorsOf('requires: { os: [linux, plan9] }\nsteps:\n  - run: make\n');
  assert.match(osErr!, /^builders\/hello\.yml:1:\d+: requires\.os: unknown os "plan9" \(one of linux, darwin, win32/);
  const [archErr] = errorsOf('requires:\n  arch: sparc\nsteps:\n  - run: make\n');
  assert.match(archErr!, /^builders\/hello\.yml:2:\d+: requires\.arch: unknown arch "sparc" \(one of x64, arm64/);
  const [cpuErr] = errorsOf('requires: { cpus: 0 }\nsteps:\n  - run: make\n');
  assert.match(cpuErr!, /requires\.cpus/);
  const [collapseErr] = errorsOf('collapse: sometimes\nsteps:\n  - run: make\n');
  assert.match(collapseErr!, /^builders\/hello\.yml:1:\d+: collapse: /);
});

test('every example builder file and the example master config parse', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const { parseMasterConfig } = await import('./master-config.js');
  const root = new URL('../../../examples/', import.meta.url).pathname;
  const files = readdirSync(`${root}builders`).filter((f) => f.endsWith('.yml'));
  assert.ok(files.length >= 3);
  for (const f of files) {
    const r = parseBuilderFile(`${root}builders/${f}`, readFileSync(`${root}builders/${f}`, 'utf8'), { configDir: root });
    assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  }
  const m = parseMasterConfig(`${root}farm/crowdbake.yml`, readFileSync(`${root}farm/crowdbake.yml`, 'utf8'));
  assert.ok(m.ok, m.ok ? '' : m.errors.join('\n'));
  assert.deepEqual(m.config.provisioners.map((p) => [p.name, p.type]), [['local-vm-1', 'local-vm']]);
});

test('[crowd] verify.minReplicas: kept when below replicas, refused above them naming the key', () => {
  const ok = parse('verify: { replicas: 3, minReplicas: 1, owners: distinct }\nsteps: [{ run: make }]\n');
  if (!ok.ok) throw new Error(ok.errors.join('; '));
  assert.deepEqual(ok.builder.verify, { replicas: 3, owners: 'distinct', minReplicas: 1 });
  const same = parse('verify: { replicas: 2, minReplicas: 2 }\nsteps: [{ run: make }]\n');
  if (!same.ok) throw new Error(same.errors.join('; '));
  assert.deepEqual(same.builder.verify, { replicas: 2 }, 'as many as replicas: never fewer, nothing to keep');
  const bad = parse('verify: { replicas: 2, minReplicas: 3 }\nsteps: [{ run: make }]\n');
  assert.equal(bad.ok, false);
  assert.match(bad.ok ? '' : bad.errors.join('; '), /verify\.minReplicas: minReplicas must not be more than replicas/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuilderRegistry, ConfigError, loadMasterConfig, readMasterConfig, type BuilderEntry } from './builder-registry.js';
import { DEFAULT_BUILD_CAPS } from '../worker-bounds.js';

function configDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-config-'));
  mkdirSync(join(dir, 'builders'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const builder = (description: string) => `description: ${description}\nsteps:\n  - run: make\n`;

/** Resolves on the first 'change' whose list satisfies `ok`; rejects after `ms`. Call before touching files. */
function changeWhere(reg: BuilderRegistry, ok: (list: BuilderEntry[]) => boolean, ms = 10_000): Promise<BuilderEntry[]> {
  return new Promise((resolve, reject) => {
    const onChange = (list: BuilderEntry[]) => {
      if (!ok(list)) return;
      done();
      resolve(list);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no matching 'change' within ${ms} ms; now: ${JSON.stringify(reg.list())}`));
    }, ms);
    const done = () => { clearTimeout(timer); reg.off('change', onChange); };
    reg.on('change', onChange);
  });
}

const find = (list: BuilderEntry[], name: string) => list.find((e) => e.name === name);

test('load reads builders/*.yml and *.yaml, ignoring other files', (t) => {
  const dir = configDir({
    'builders/hello.yml': builder('hello v1'),
    'builders/world.yaml': builder('world'),
    'builders/README.md': '# not a builder',
    'builders/.hidden.yml': 'junk: [',
  });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const reg = new BuilderRegistry(dir);
  const list = reg.load();
  assert.deepEqual(list.map((e) => [e.name, e.file, e.error]), [
    ['hello', 'builders/hello.yml', null],
    ['world', 'builders/world.yaml', null],
  ]);
  assert.equal(reg.get('hello')?.definition?.description, 'hello v1');
  assert.equal(reg.get('nope'), undefined);
  assert.deepEqual(reg.errors(), []);
});

test('load: a broken file keeps its last good version, a never-valid file has no definition', (t) => {
  const dir = configDir({ 'builders/hello.yml': builder('hello v1'), 'builders/bad.yml': 'steps: 3\n' });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const reg = new BuilderRegistry(dir);
  reg.load();
  assert.deepEqual(reg.get('bad'), {
    name: 'bad', file: 'builders/bad.yml', definition: null,
    error: 'builders/bad.yml:1:1: steps: expected a list, got 3',
  });
  writeFileSync(join(dir, 'builders/hello.yml'), 'description: v2\nstepz: []\n');
  reg.load();
  const hello = reg.get('hello');
  assert.equal(hello?.definition?.description, 'hello v1');
  assert.match(hello?.error ?? '', /^builders\/hello\.yml:1:1: missing required key "steps"\nbuilders\/hello\.yml:2:1: unknown key "stepz"/);
  assert.equal(reg.errors().length, 3);
});

test('load: a missing builders dir is an empty registry; hello.yml wins over hello.yaml', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const reg = new BuilderRegistry(dir);
  assert.deepEqual(reg.load(), []);
  assert.deepEqual(reg.errors(), []);
  mkdirSync(join(dir, 'builders'));
  writeFileSync(join(dir, 'builders/hello.yaml'), builder('from yaml'));
  writeFileSync(join(dir, 'builders/hello.yml'), builder('from yml'));
  reg.load();
  assert.equal(reg.get('hello')?.definition?.description, 'from yml');
  assert.deepEqual(reg.errors(), ['builders/hello.yaml: ignored, builder "hello" is already defined by builders/hello.yml']);
});

test('watch: break, fix, delete and add builder files', async (t) => {
  const dir = configDir({ 'builders/hello.yml': builder('hello v1'), 'builders/world.yml': builder('world') });
  const reg = new BuilderRegistry(dir);
  t.after(() => { reg.close(); rmSync(dir, { recursive: true, force: true }); });
  reg.load();
  reg.watch();
  const file = (name: string) => join(dir, 'builders', name);

  // Break it: the last good version stays active and the error is recorded.
  let changed = changeWhere(reg, (l) => find(l, 'hello')?.error != null);
  writeFileSync(file('hello.yml'), 'description: hello v2\nsteps:\n  - run: make\n    timeout: soon\n');
  let list = await changed;
  assert.equal(find(list, 'hello')?.definition?.description, 'hello v1');
  assert.equal(find(list, 'hello')?.error, 'builders/hello.yml:4:5: steps.0.timeout: "soon" is not a duration (use e.g. 500ms, 30s, 5m, 2h)');
  assert.deepEqual(reg.errors(), [find(list, 'hello')?.error]);

  // Fix it: the error clears and the new version is active.
  changed = changeWhere(reg, (l) => find(l, 'hello')?.error === null);
  writeFileSync(file('hello.yml'), builder('hello v3'));
  list = await changed;
  assert.equal(find(list, 'hello')?.definition?.description, 'hello v3');
  assert.deepEqual(reg.errors(), []);

  // Delete a file: its builder is gone.
  changed = changeWhere(reg, (l) => !find(l, 'world'));
  unlinkSync(file('world.yml'));
  list = await changed;
  assert.deepEqual(list.map((e) => e.name), ['hello']);
  assert.equal(reg.get('world'), undefined);

  // Add a file: it appears.
  changed = changeWhere(reg, (l) => find(l, 'new') !== undefined);
  writeFileSync(file('new.yaml'), builder('brand new'));
  list = await changed;
  assert.deepEqual(list.map((e) => [e.name, e.definition?.description]), [['hello', 'hello v3'], ['new', 'brand new']]);

  // A new file that was never valid is listed with its error and no definition.
  changed = changeWhere(reg, (l) => find(l, 'broken') !== undefined);
  writeFileSync(file('broken.yml'), 'steps: [\n');
  list = await changed;
  assert.equal(find(list, 'broken')?.definition, null);
  assert.match(find(list, 'broken')?.error ?? '', /^builders\/broken\.yml:2:1: YAML syntax error/);
});

test('close stops watching', async (t) => {
  const dir = configDir({ 'builders/hello.yml': builder('v1') });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const reg = new BuilderRegistry(dir, { debounceMs: 20 });
  reg.load();
  reg.watch();
  reg.close();
  let events = 0;
  reg.on('change', () => events++);
  writeFileSync(join(dir, 'builders/hello.yml'), builder('v2'));
  // Give a (wrongly) live watcher ample time to fire: several debounce periods.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(events, 0);
  assert.equal(reg.get('hello')?.definition?.description, 'v1');
});

test('loadMasterConfig: defaults when missing, values when valid', (t) => {
  const dir = configDir({});
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const crowd = { farmName: 'crowdbake', enrollment: { mode: 'invite', joinsPerHour: 10 }, trust: { promoteAfter: 10, fewerReplicasAfter: 0 },
    public: true, trustedProxies: [], eventSubscribers: { max: 1000, perAddress: 20, stuckAfter: 60000 } };
  assert.deepEqual(loadMasterConfig(dir), { maxAttempts: 3, maxArtifactBytes: 1024 ** 3, provisioners: [], retention: { logsMs: null, artifactsMs: null }, limits: DEFAULT_BUILD_CAPS, ...crowd });
  writeFileSync(join(dir, 'crowdbake.yml'), 'listen: 0.0.0.0:8585\nmaxAttempts: 5\ntitle: Hello farm\n');
  assert.deepEqual(loadMasterConfig(dir), { listen: '0.0.0.0:8585', maxAttempts: 5, title: 'Hello farm', maxArtifactBytes: 1024 ** 3, provisioners: [], retention: { logsMs: null, artifactsMs: null }, limits: DEFAULT_BUILD_CAPS, ...crowd, farmName: 'Hello farm' });
  writeFileSync(join(dir, 'crowdbake.yml'), 'listen: "[::1]:8080"\n');
  assert.deepEqual(loadMasterConfig(dir), { listen: '[::1]:8080', maxAttempts: 3, maxArtifactBytes: 1024 ** 3, provisioners: [], retention: { logsMs: null, artifactsMs: null }, limits: DEFAULT_BUILD_CAPS, ...crowd });
  // [crowd] keys.
  writeFileSync(join(dir, 'crowdbake.yml'), 'name: Our farm\nurl: https://farm.example.org/\nenrollment: { mode: open, joinsPerHour: 3 }\ntrust: { promoteAfter: 0, fewerReplicasAfter: 5 }\n');
  assert.deepEqual(loadMasterConfig(dir), {
    maxAttempts: 3, maxArtifactBytes: 1024 ** 3, provisioners: [], retention: { logsMs: null, artifactsMs: null }, limits: DEFAULT_BUILD_CAPS,
    ...crowd, farmName: 'Our farm', url: 'https://farm.example.org', enrollment: { mode: 'open', joinsPerHour: 3 }, trust: { promoteAfter: 0, fewerReplicasAfter: 5 },
  });
  writeFileSync(join(dir, 'crowdbake.yml'), 'enrollment: { mode: everyone }\n');
  assert.match(String(readMasterConfig(dir).ok === false && (readMasterConfig(dir) as { errors: string[] }).errors[0]), /crowdbake\.yml:1:\d+: enrollment\.mode: .*invite.*open.*closed/);
});

test('loadMasterConfig: unknown keys and bad values name the line and key', (t) => {
  const dir = configDir({ 'crowdbake.yml': 'title: farm\nlisten: 8080\nmaxAttempts: 0\nport: 1\n' });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.deepEqual(readMasterConfig(dir), {
    ok: false,
    errors: [
      'crowdbake.yml:2:1: listen: expected a string, got 8080',
      'crowdbake.yml:3:1: maxAttempts: must be at least 1, got 0',
      'crowdbake.yml:4:1: unknown key "port" (allowed: listen, maxAttempts, title, retention, maxArtifactSize, artifacts, provisioners, limits, name, url, enrollment, trust, public, trustedProxies, eventSubscribers)',
    ],
  });
  assert.throws(() => loadMasterConfig(dir), (e) => e instanceof ConfigError && e.errors.length === 3);
  writeFileSync(join(dir, 'crowdbake.yml'), 'listen: localhost:99999\n');
  assert.deepEqual(readMasterConfig(dir), {
    ok: false,
    errors: ['crowdbake.yml:1:1: listen: expected HOST:PORT like 127.0.0.1:8080 or [::1]:8080, got "localhost:99999"'],
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { dsse } from '@sigstore/core';
import { chromium, type Browser } from 'playwright-core';
import type { BuildView } from '../protocol/api.js';
import { FarmSummarySchema, ProvenanceBundleSchema, type Envelope, type ProvenanceBundle } from '../protocol/provenance.js';
import { startWorker, type WorkerHandle } from '../worker/agent.js';
import { CLI, ROOT, tempDir, testMaster, type TestMaster } from './helpers/cluster.js';
import { cleanup, crowdMaster, identity, join, until, type Identity } from './helpers/crowd.js';

/**
 * [provenance] A replicated build on three real workers of three volunteers, each with the
 * key it enrolled when it joined: every attempt is signed, the farm's summary names all
 * three, and `crowdbake verify` (the real CLI, offline) passes on the downloaded file and
 * fails, with its reason, on each forgery a downstream user could be handed.
 */

const REPLICATED = `
requires: { executor: host }
verify: { replicas: 3, owners: distinct }
provenance: required
steps:
  - run: printf 'hello from a reproducible build\\n' > out.txt
artifacts: [out.txt]
`;

async function decided(m: TestMaster, id: number): Promise<BuildView> {
  return until(`the verdict of build ${id}`, async () => {
    const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
    return b.verification && b.verification.verdict !== 'pending' ? b : null;
  }, 60_000);
}

/** Joins like `crowdbake join` (volunteer key, worker key) and starts a real agent that signs with its worker key. */
async function signingWorker(m: TestMaster, who: Identity, displayName: string, worker: string, dirs: string[]): Promise<WorkerHandle & { key: Identity }> {
  const key = identity();
  const j = await join(m, { worker, who, displayName, workerKey: key });
  assert.equal(j.status, 201, JSON.stringify(j.body));
  const dir = tempDir('prov-worker');
  dirs.push(dir);
  const w = await startWorker({
    preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: j.token, dataDir: dir, executor: 'host', labels: [],
    workerKey: key.privateKey, log: () => undefined,
  });
  return Object.assign(w, { key });
}

function verifyCli(file: string, bundle: string, ...extra: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, 'verify', file, '--provenance', bundle, ...extra], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const payloadOf = (e: Envelope) => JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8'));

test('three volunteers sign their attempts; the farm summary names all three; crowdbake verify passes on the download and fails on a flipped byte, another worker\'s key, a replayed statement and another farm\'s summary', async (t) => {
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  const m = await crowdMaster({ rep: REPLICATED }, 'name: farm-a\nenrollment: { mode: open, joinsPerHour: 100 }\n', dirs);
  let other: TestMaster | null = null;
  let browser: Browser | null = null;
  t.after(async () => { await browser?.close(); for (const w of workers) await w.close(); await m.close(); await other?.close(); cleanup(...dirs); });
  const ws = [];
  for (const [n, name] of [['w1', 'Ada'], ['w2', 'Bo'], ['w3', 'Cy']] as const) {
    const w = await signingWorker(m, identity(), name, n, dirs);
    workers.push(w);
    ws.push(w);
  }

  // Two rounds: the first one's statements are the material for a replay below.
  const first = await decided(m, await m.force('rep'));
  assert.equal(first.verification!.verdict, 'verified');
  const id = await m.force('rep');
  const b = await decided(m, id);
  assert.equal(b.verification!.verdict, 'verified', JSON.stringify(b.verification));
  assert.deepEqual(b.verification!.members.map((x) => x.worker).sort(), ['w1', 'w2', 'w3']);

  const dir = tempDir('prov-dl');
  dirs.push(dir);
  const file = joinPath(dir, 'out.txt');
  const bundleFile = joinPath(dir, 'out.txt.provenance.json');
  const art = await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt`);
  assert.equal(art.status, 200);
  writeFileSync(file, Buffer.from(await art.arrayBuffer()));
  const res = await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt/provenance`);
  assert.equal(res.status, 200, await res.clone().text());
  const bundleText = await res.text();
  writeFileSync(bundleFile, bundleText);
  const bundle: ProvenanceBundle = ProvenanceBundleSchema.parse(JSON.parse(bundleText));

  // Every attempt's statement is there; the summary names the three workers and three volunteers.
  assert.equal(bundle.attestations.length, 3);
  const summary = FarmSummarySchema.parse(payloadOf(bundle.summary));
  const attempts = summary.predicate.crowdbake.attempts;
  assert.deepEqual(attempts.map((a) => a.worker).sort(), ['w1', 'w2', 'w3']);
  assert.deepEqual(attempts.map((a) => a.volunteer?.displayName).sort(), ['Ada', 'Bo', 'Cy']);
  assert.equal(new Set(attempts.map((a) => a.owner)).size, 3);
  assert.ok(attempts.every((a) => a.verdict === 'verified' && a.workerKey && a.statementSha256));
  assert.equal(summary.predicate.verificationResult, 'PASSED');
  for (const a of bundle.attestations) {
    const st = payloadOf(a.envelope);
    assert.equal(st.predicate.runDetails.builder.id, `urn:crowdbake:worker:${a.worker}`);
    assert.equal(st.subject[0].digest.sha256, bundle.artifact.sha256);
  }

  // Each worker's log says it signed, with which key.
  const log = await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();
  assert.match(log, /provenance: statement of 1 artifact\(s\) signed with this worker's key sha256:[0-9a-f]{64}\nbuild success/);

  // The build page shows the summary: the verdict, the three volunteers, their signed statements.
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage();
  await page.goto(`${m.url}/#/builds/${id}`);
  await page.getByRole('heading', { name: 'Provenance' }).waitFor({ timeout: 30_000 });
  const table = page.getByRole('table', { name: 'Attempts named by the farm summary' });
  await table.waitFor({ timeout: 30_000 });
  const rows = await table.locator('tbody tr').allInnerTexts();
  assert.deepEqual(rows.map((r) => r.split('\t').slice(1, 4).join(' ')).sort(), ['w1 Ada verified', 'w2 Bo verified', 'w3 Cy verified']);
  assert.match(await page.getByText('The farm\'s signed summary').innerText(), /verified \(PASSED\) — 3 of 3 replica\(s\) agreed, on workers of distinct volunteers/);
  assert.match(await page.locator('section', { has: page.getByRole('heading', { name: 'Provenance' }) }).innerText(), new RegExp(`--farm-key ${bundle.farmKey.keyid}`));

  // Another implementation agrees: DSSE's PAE from the spec and Ed25519 from Python's cryptography.
  const py = spawnSync('/usr/bin/python3', [joinPath(ROOT, 'test', 'fixtures', 'dsse-verify.py'), bundleFile], { encoding: 'utf8' });
  assert.equal(py.status, 0, py.stdout + py.stderr);
  assert.deepEqual(py.stdout.trim().split('\n').sort(), ['ok farm summary', ...['w1', 'w2', 'w3'].map((w) => {
    const a = attempts.find((x) => x.worker === w)!;
    return `ok statement of build ${a.build} by ${w}`;
  })].sort());

  // The farm key at its well-known URL, pinned by keyid and by its JSON.
  const farmKey = await (await fetch(`${m.url}/.well-known/crowdbake/farm-key`)).json() as { keyid: string };
  assert.equal(farmKey.keyid, bundle.farmKey.keyid);
  const keyFile = joinPath(dir, 'farm-key.json');
  writeFileSync(keyFile, JSON.stringify(farmKey));
  const ok = verifyCli(file, bundleFile, '--farm-key', keyFile);
  assert.equal(ok.status, 0, ok.out);
  assert.match(ok.out, /as pinned/);
  for (const w of ['w1', 'w2', 'w3']) assert.match(ok.out, new RegExp(`on ${w}: signed by its worker key sha256:[0-9a-f]{64}, volunteer vol-[0-9a-f]+ \\((Ada|Bo|Cy)\\)`));
  assert.match(ok.out, /3 signed attempt\(s\) from 3 distinct owner\(s\) made these bytes/);
  assert.equal(verifyCli(file, bundleFile, '--farm-key', farmKey.keyid).status, 0);
  // Without a pin it fails and says how to pin; --trust-embedded-key passes with a warning, NOT pinned.
  const unpinned = verifyCli(file, bundleFile);
  assert.equal(unpinned.status, 1, unpinned.out);
  assert.match(unpinned.out, /no farm key is pinned, and a bundle cannot vouch for its own key .*\/\.well-known\/crowdbake\/farm-key.*--farm-key FILE/);
  const embedded = verifyCli(file, bundleFile, '--trust-embedded-key');
  assert.equal(embedded.status, 0, embedded.out);
  assert.match(embedded.out, /WARNING: --trust-embedded-key/);
  assert.match(embedded.out, /verified: .* \(farm key NOT pinned\)/);
  assert.equal(verifyCli(file, bundleFile, '--trust-embedded-key', '--farm-key', farmKey.keyid).status, 2, 'the two exclude each other');

  // A flipped byte.
  const flipped = joinPath(dir, 'flipped.txt');
  const bytes = readFileSync(file);
  bytes[0] = bytes[0]! ^ 1;
  writeFileSync(flipped, bytes);
  const bad = verifyCli(flipped, bundleFile, '--farm-key', farmKey.keyid);
  assert.equal(bad.status, 1);
  assert.match(bad.out, /wrong bytes: the file has sha256 [0-9a-f]{64}/);

  // w1's statement, re-signed with w2's key (a statement signed by another worker's key).
  const forged = structuredClone(bundle);
  const w1 = forged.attestations.find((a) => a.worker === 'w1')!;
  const pae = dsse.preAuthEncoding(w1.envelope.payloadType, Buffer.from(w1.envelope.payload, 'base64'));
  w1.envelope.signatures = [{ keyid: '', sig: sign(null, pae, ws[1]!.key.privateKey).toString('base64') }];
  const forgedFile = joinPath(dir, 'forged.json');
  writeFileSync(forgedFile, JSON.stringify(forged));
  const other1 = verifyCli(file, forgedFile, '--farm-key', farmKey.keyid);
  assert.equal(other1.status, 1);
  assert.match(other1.out, /on w1: the statement's signature does not verify with the key the farm enrolled for w1 .*signed by another key/);
  const py2 = spawnSync('/usr/bin/python3', [joinPath(ROOT, 'test', 'fixtures', 'dsse-verify.py'), forgedFile], { encoding: 'utf8' });
  assert.equal(py2.status, 1);
  assert.match(py2.stdout, /FAIL statement of build \d+ by w1: no signature verifies/);

  // w1's own, validly signed statement of the first round, replayed into this bundle.
  const oldBundle = ProvenanceBundleSchema.parse(await (await fetch(`${m.url}/api/v1/builds/${first.id}/artifacts/out.txt/provenance`)).json());
  const replayed = structuredClone(bundle);
  const target = replayed.attestations.find((a) => a.worker === 'w1')!;
  target.envelope = oldBundle.attestations.find((a) => a.worker === 'w1')!.envelope;
  const replayFile = joinPath(dir, 'replayed.json');
  writeFileSync(replayFile, JSON.stringify(replayed));
  const rep = verifyCli(file, replayFile, '--farm-key', farmKey.keyid);
  assert.equal(rep.status, 1);
  assert.match(rep.out, /on w1: the statement is not the one the farm accepted .*replayed or swapped/);

  // A summary from another farm: farm-b's key pinned, farm-a's bundle given.
  other = await testMaster({}, { dir: tempDir('prov-farm-b') });
  dirs.push(joinPath(other.dataDir, '..'));
  const keyB = await (await fetch(`${other.url}/.well-known/crowdbake/farm-key`)).json() as { keyid: string };
  assert.notEqual(keyB.keyid, farmKey.keyid);
  const wrongFarm = verifyCli(file, bundleFile, '--farm-key', keyB.keyid);
  assert.equal(wrongFarm.status, 1);
  assert.match(wrongFarm.out, /the summary is from another farm: it is signed by farm key sha256:[0-9a-f]+ \("farm-a"\), the pinned farm key is sha256:/);
  // And farm-b's key swapped into farm-a's bundle: farm-a's signature does not verify with it.
  const swapped = { ...bundle, farmKey: { ...keyB } };
  const swappedFile = joinPath(dir, 'swapped.json');
  writeFileSync(swappedFile, JSON.stringify(swapped));
  const sw = verifyCli(file, swappedFile, '--farm-key', keyB.keyid);
  assert.equal(sw.status, 1);
  assert.match(sw.out, /the summary's signature does not verify with farm key/);
});

import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildSpecSchema } from '../protocol/build-spec.js';
import { Attestations } from '../master/provenance/attestations.js';
import { diffoscopeAvailable, runDiffoscope } from '../master/provenance/diffoscope-run.js';
import { openStore } from '../master/store/open-store.js';
import type { BuildRow } from '../master/store/store.js';
import { attemptStatement, signStatement } from '../worker/provenance-signer.js';
import { median, type BenchResult } from './types.js';

/**
 * [provenance] What signing costs a worker per attempt, what checking costs the master, and
 * how long diffoscope takes on the master for a small and a larger differing pair (real
 * diffoscope, in bwrap when installed).
 */
export async function run(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-bench-prov-'));
  try {
    const sent = { builder: 'pkg', source: { git: 'https://example.org/pkg.git', branch: 'main' }, executor: 'container', revision: 'a'.repeat(40),
      environment: { base: 'busybox', setup: [] }, steps: [{ name: 's', run: 'make', env: {} }], artifacts: ['*.deb'], limits: {}, network: false, testInstall: null };
    const spec = BuildSpecSchema.parse(sent);
    const artifacts = Array.from({ length: 5 }, (_, i) => ({ name: `pkg${i}.deb`, size: 1000 + i, sha256: String(i).repeat(64) }));
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const facts = { buildId: 1, attempt: 1, worker: 'w', spec, executor: 'container' as const, limits: {}, revision: 'a'.repeat(40), artifacts, startedOn: new Date().toISOString(), finishedOn: new Date().toISOString(), agentVersion: 'b' };
    const sign: number[] = [];
    for (let i = 0; i < 2000; i++) { const t = process.hrtime.bigint(); signStatement(attemptStatement(facts), privateKey); sign.push(Number(process.hrtime.bigint() - t) / 1e3); }
    const store = await openStore(`sqlite:${join(dir, 'db')}`);
    await store.createToken({ name: 'w', hash: 'h', labels: [], maxBuilds: 1, createdAt: 't', revokedAt: null, workerKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64') });
    const att = new Attestations(store, dir);
    const envelope = signStatement(attemptStatement(facts), privateKey);
    const check: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const t = process.hrtime.bigint();
      const why = await att.accept({ row: { id: 1, builder: 'pkg', revision: 'a'.repeat(40), attempt: 1 } as BuildRow, worker: 'w', sent, received: artifacts, envelope, required: true });
      if (why) throw new Error(why);
      check.push(Number(process.hrtime.bigint() - t) / 1e3);
    }
    await store.close();
    const out: BenchResult[] = [
      { name: 'provenance: worker signs an attempt\'s statement (5 artifacts)', value: median(sign), unit: 'µs', note: 'median of 2,000; in-toto statement, JCS spec hash, DSSE PAE, Ed25519' },
      { name: 'provenance: master checks and stores a statement (5 artifacts)', value: median(check), unit: 'µs', note: 'median of 1,000; token from SQLite, signature, field comparison, file write' },
    ];
    if (diffoscopeAvailable()) {
      for (const [label, lines] of [['2 lines', 2], ['200,000 lines (≈4 MiB)', 200_000]] as const) {
        const d = join(dir, `pair-${lines}`);
        for (const side of ['a', 'b']) {
          mkdirSync(join(d, side), { recursive: true });
          writeFileSync(join(d, side, 'f.txt'), Array.from({ length: lines }, (_, i) => `line ${i} built at ${side === 'a' ? '2026-01-01 00:00:00' : '2026-01-01 00:00:01'}`).join('\n'));
        }
        const t = Date.now();
        const r = await runDiffoscope(d, 'a/f.txt', 'b/f.txt', { timeoutMs: 300_000, maxReportBytes: 2 * 1024 * 1024, memoryBytes: 4 * 1024 ** 3 });
        out.push({ name: `provenance: diffoscope on a differing pair, ${label}`, value: Date.now() - t, unit: 'ms', note: `${r.sandbox.split(' ')[0]}; report ${r.report.length} bytes${r.truncated ? ', cut at 2 MiB' : ''}${r.problem ? `; ${r.problem}` : ''}` });
      }
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

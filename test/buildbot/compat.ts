import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { normalise, RESULT, type BuildResult, type Lab } from './fixture.js';

/**
 * The comparison shared by the host and container test files: the same builders run on the
 * stock worker and on ours; step results and (normalised) logs must match, except where this
 * worker deliberately differs (worker/buildbot/README.md, "Differences").
 */

export interface Pair { stock: BuildResult; ours: BuildResult }

export async function runPair(lab: Lab, builder: string, stockName: string, ourName: string): Promise<Pair> {
  const [a, b] = [await lab.force(`${builder}@${stockName}`), await lab.force(`${builder}@${ourName}`)];
  const [stock, ours] = await Promise.all([lab.build(a), lab.build(b)]);
  if (process.env.CB_DUMP) writeFileSync(join(process.env.CB_DUMP, `${builder}-${ourName}.json`), JSON.stringify({ stock, ours }, null, 1));
  return { stock, ours };
}

export function step(build: BuildResult, name: string): BuildResult['steps'][number] {
  const s = build.steps.find((x) => x.name === name);
  assert.ok(s, `no step ${name} in build ${build.buildid}: ${build.steps.map((x) => x.name).join(', ')}`);
  return s;
}

/**
 * Between two header lines, stdout ("o") and stderr ("e") come from separate pipes, so their
 * interleaving is a race in any worker, the stock one included: compare each stream's lines
 * in order, not how they interleave.
 */
export function streamsApart(log: string): string {
  const out: string[] = [];
  let run: string[] = [];
  const flush = () => {
    out.push(...run.filter((l) => l.startsWith('o')), ...run.filter((l) => !l.startsWith('o')));
    run = [];
  };
  for (const line of log.split('\n')) {
    if (line.startsWith('o') || line.startsWith('e')) run.push(line);
    else { flush(); out.push(line); }
  }
  flush();
  return out.join('\n');
}

/** Asserts equal results and logs, step by step, leaving out `skip` steps. */
export function assertSame(pair: Pair, basedirs: string[], skip: string[] = [], rewrite: (log: string) => string = (l) => l, onlyLogs?: string[]): void {
  const clean = (b: BuildResult) => normalise(b, basedirs).filter((s) => !skip.includes(s.name))
    .map((s) => ({ ...s, logs: Object.fromEntries(Object.entries(s.logs).filter(([k]) => !onlyLogs || onlyLogs.includes(k)).map(([k, v]) => [k, streamsApart(rewrite(v))])) }));
  const [stock, ours] = [clean(pair.stock), clean(pair.ours)];
  assert.deepEqual(ours.map((s) => s.name), stock.map((s) => s.name), 'same steps');
  for (let i = 0; i < stock.length; i++) {
    const [a, b] = [ours[i]!, stock[i]!];
    // BuildBot 3.7 can lose a step's last summary: when the step ends while an earlier
    // updateSummary is still writing (PH_RUNNING), the final call is only queued, stop()
    // marks the debouncer stopped, and the queued call is then dropped (buildbot/util/
    // debounce.py `retry` → `self()` returns when stopped). The step stays "running" with its
    // results set, whichever worker ran it; a loaded machine makes it likelier. The master,
    // not the worker, writes that string, so a lost one is compared as unknown; results and
    // logs are still compared.
    if (lostSummary(a) || lostSummary(b)) { a.state = b.state = '(summary lost by BuildBot)'; }
    assert.deepEqual(a, b, `step ${b.name}`);
  }
  assert.equal(pair.ours.results, pair.stock.results, 'same build result');
}

function lostSummary(s: BuildResult['steps'][number]): boolean {
  return s.results !== null && s.state === 'running';
}

/** Files under a directory: relative path → content (symlinks as "-> target"). */
export function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (st?.isDirectory()) walk(p);
      else out[relative(dir, p)] = st ? readFileSync(p, 'utf8') : '(dangling)';
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** The checks every executor must pass; `ourName` is the worker under test. */
export function expectations(lab: Lab, ourName: string, basedirs: string[]) {
  return {
    shell(pair: Pair, rewrite?: (l: string) => string): void {
      // pwd and long-line differ on purpose; missing-program prints each worker's own error text.
      assertSame(pair, basedirs, ['long-line', 'pwd', 'missing-program'], rewrite);
      const long = (b: BuildResult) => step(b, 'long-line').logs.stdio!.split('\n').filter((l) => l.startsWith('o')).map((l) => l.slice(1));
      assert.equal(long(pair.ours).join('').length, 5000, 'our worker keeps every character of a 5000-character line');
      assert.ok(long(pair.ours).every((l) => l.length <= 4095));
      assert.equal(long(pair.stock).join('').length, 4999, 'the stock worker drops one (lineboundaries.py)');
      assert.match(step(pair.ours, 'env-logged').logs.stdio!, /^h  CB_SHOWN=yes$/m);
      for (const b of [pair.stock, pair.ours]) assert.equal(step(b, 'missing-program').results, RESULT.FAILURE);
      assert.match(step(pair.ours, 'missing-program').logs.stdio!, /No such file or directory|not found/);
    },
    transfer(pair: Pair): void {
      assertSame(pair, basedirs);
      const [stockUp, ourUp] = [tree(join(lab.uploadDir, 'stock')), tree(join(lab.uploadDir, ourName))];
      // The stock worker "closes" an upload it could not open: an empty file stays on the master.
      assert.equal(stockUp['missing.txt'], '');
      assert.equal(ourUp['missing.txt'], undefined);
      delete stockUp['missing.txt'];
      assert.deepEqual(ourUp, stockUp);
      assert.equal(ourUp['dir-bz2/sub/b.txt'], 'b\n');
      assert.equal(ourUp['dir/link'], 'a\n', 'the symlink arrives as a symlink to a.txt');
    },
    obfuscated(pair: Pair): void {
      // The stock worker gets ['obfuscated', real, fake] as a list (msgpack has no tuples), runs
      // its str() as one argument, and so shows the real value in the log.
      assert.equal(pair.stock.results, RESULT.FAILURE);
      assert.match(step(pair.stock, 'obfuscated').logs.stdio!, /real-secret/);
      assert.equal(pair.ours.results, RESULT.SUCCESS);
      const log = step(pair.ours, 'obfuscated').logs.stdio!;
      assert.match(log, /^omatch$/m, 'the real value ran');
      assert.match(log, /^h argv: \[b'sh', b'-c', b'test "\$1" = "real-\$2" && echo match', b'sh', b'XXXXXX', b'secret'\]$/m, 'the fake one is shown');
      assert.doesNotMatch(log, /real-secret/);
    },
  };
}

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RESULT, ROOT, startLab, stopChild, until, type Lab } from './fixture.js';

// The plain podman path, as in compat.test.ts.
process.env.CROWDBAKE_CONTAINER_FAST ??= '0';

const CLI = join(ROOT, 'bin', 'crowdbake.js');
const WORKERS = ['idlehost', 'idlecont', 'idleapp'] as const;

/**
 * `crowdbake worker --buildbot` under the volunteer's rules, against the real BuildBot 3.7
 * master: pausing through the CLI freezes a running command (no output, its timeout and
 * maxTime stopped) while the connection stays up (the master's keepalive every second is
 * answered), resuming lets it finish; a command started while paused waits; with the desktop
 * app as the idle source, reported input freezes it the same way.
 */
describe('BuildBot worker: idle-gating and freezing', () => {
  let lab: Lab;
  const workers = new Map<string, { child: ChildProcess; data: string; out: () => string }>();

  before(async () => {
    lab = await startLab([...WORKERS], ['ticks'], { keepaliveSeconds: 1 });
    for (const name of WORKERS) {
      const data = mkdtempSync(join(tmpdir(), `crowdbake-bbidle-${name}-`));
      const child = spawn(process.execPath, [CLI, 'worker', '--buildbot', lab.msgpackUrl, '--name', name, '--password', `pw-${name}`,
        '--executor', name === 'idlecont' ? 'container' : 'host', '--data', data, '--basedir', join(lab.dir, name),
        ...(name === 'idleapp' ? ['--idle-source', 'app', '--idle-after', '30s'] : ['--idle-source', 'none'])], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
      workers.set(name, { child, data, out: () => out });
    }
    await Promise.all(WORKERS.map((w) => lab.waitConnected(w)));
  });

  after(async () => {
    for (const w of workers.values()) {
      await stopChild(w.child);
      rmSync(w.data, { recursive: true, force: true });
    }
    await lab?.stop();
  });

  const cli = (...args: string[]): string => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `crowdbake ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const stepLog = async (brid: number): Promise<string> => (await lab.build(brid, { running: true })).steps.find((s) => s.name === 'ticks')?.logs.stdio ?? '';
  const ticks = (log: string): number => (log.match(/^otick \d+$/gm) ?? []).length;
  const connected = async (name: string): Promise<boolean> =>
    (await lab.get<{ workers: { name: string; connected_to: unknown[] }[] }>('workers')).workers.some((w) => w.name === name && w.connected_to.length > 0);
  const reportIdle = async (data: string, idleMs: number): Promise<void> => {
    const { url, secret } = JSON.parse(readFileSync(join(data, 'control.json'), 'utf8')) as { url: string; secret: string };
    const r = await fetch(`${url}/api/v1/idle`, { method: 'POST', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify({ idleMs }) });
    assert.equal(r.status, 204);
  };

  /** The step runs until this file exists (its workdir; the container sees it at /work/build). */
  const stopFile = (name: string): string => join(lab.dir, name, 'ticks', 'build', 'stop');
  const MAX_TIME_S = 15;

  /**
   * Freezes the running step with `freeze`, checks that nothing moves for at least 4 s and
   * until its wall time exceeds its maxTime, thaws it, lets it end, checks it succeeded.
   */
  const frozenMidCommand = async (name: string, freeze: () => Promise<void>, thaw: () => Promise<void>): Promise<void> => {
    const w = workers.get(name)!;
    rmSync(stopFile(name), { force: true });
    const brid = await lab.force(`ticks@${name}`);
    await until(async () => ticks(await stepLog(brid)) >= 2, 90_000, `${name}: two ticks`);
    const ticking = Date.now();
    await freeze();
    await until(async () => /^hcrowdbake: frozen, /m.test(await stepLog(brid)), 10_000, `${name}: the frozen header`);
    await sleep(500);
    const atFreeze = await stepLog(brid);
    const status = JSON.parse(cli('status', '--json', '--data', w.data)) as { state: string; current: { builder: string; frozen: boolean }[] };
    assert.deepEqual(status.current.map((c) => [c.builder, c.frozen]), [[`ticks@${name}`, true]]);
    // Longer than the step's timeout (2 s without output), and past its maxTime on the wall
    // clock: frozen time counts for neither.
    await sleep(4000);
    while (Date.now() - ticking < (MAX_TIME_S + 1) * 1000) await sleep(250);
    const later = await stepLog(brid);
    assert.equal(ticks(later), ticks(atFreeze), `${name}: no progress while frozen\n${w.out()}\n${later}`);
    assert.equal((await lab.build(brid, { running: true })).results, null, `${name}: still running`);
    assert.ok(await connected(name), `${name}: still connected to the master`);
    await thaw();
    await until(async () => ticks(await stepLog(brid)) > ticks(later), 30_000, `${name}: ticking again`);
    writeFileSync(stopFile(name), '');
    const done = await lab.build(brid);
    const log = done.steps.find((s) => s.name === 'ticks')!.logs.stdio!;
    assert.equal(done.results, RESULT.SUCCESS, `${name}: ${log}`);
    assert.match(log, /^odone$/m);
    assert.doesNotMatch(log, /timed out/);
    assert.ok(Number(/^hcrowdbake: thawed after (\d+\.\d) s$/m.exec(log)?.[1]) >= 4, `${name}: the thaw header says how long: ${log}`);
    assert.ok(Number(/elapsedTime=([\d.]+)/.exec(log)![1]) > MAX_TIME_S, `${name}: its wall time exceeded maxTime`);
    assert.equal(w.out().match(/buildbot: connected to /g)?.length, 1, `${name}: never reconnected`);
  };

  for (const name of ['idlehost', 'idlecont'] as const) {
    test(`${name}: crowdbake pause freezes a running command (timeout and maxTime stopped), resume finishes it`, async () => {
      const { data } = workers.get(name)!;
      await frozenMidCommand(name,
        async () => { assert.match(cli('pause', '--data', data), /^paused: paused by the volunteer/); },
        async () => { cli('resume', '--data', data); });
    });
  }

  test('idlehost: a command started while paused waits frozen, and runs after resume', async () => {
    const { data } = workers.get('idlehost')!;
    rmSync(stopFile('idlehost'), { force: true });
    cli('pause', '--data', data);
    try {
      const brid = await lab.force('ticks@idlehost');
      await until(async () => /^hcrowdbake: waiting, /m.test(await stepLog(brid)), 60_000, 'the waiting header');
      await sleep(3000);
      const waiting = await stepLog(brid);
      assert.equal(ticks(waiting), 0, 'nothing ran while paused');
      assert.doesNotMatch(waiting, /^h in dir /m, 'not even started');
      assert.equal((JSON.parse(cli('status', '--json', '--data', data)) as { state: string }).state, 'paused');
      cli('resume', '--data', data);
      await until(async () => ticks(await stepLog(brid)) >= 1, 30_000, 'a tick after resume');
      writeFileSync(stopFile('idlehost'), '');
      const done = await lab.build(brid);
      assert.equal(done.results, RESULT.SUCCESS);
    } finally {
      cli('resume', '--data', data);
    }
  });

  test('idleapp: input reported by the desktop app freezes the command; idle again thaws it', async () => {
    const { data } = workers.get('idleapp')!;
    // Without reports the app source counts as "in use"; the test feeds it as the app would,
    // one report after the other: first a long idle time, then input (0 ms), then idle again.
    let idleMs = 600_000;
    let feeding = true;
    await reportIdle(data, idleMs);
    const feed = (async () => { while (feeding) { await reportIdle(data, idleMs); await sleep(250); } })();
    try {
      await frozenMidCommand('idleapp',
        async () => { idleMs = 0; await sleep(800); },
        async () => { idleMs = 600_000; await sleep(800); });
    } finally {
      feeding = false;
      await feed;
    }
  });
});

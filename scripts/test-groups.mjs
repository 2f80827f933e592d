// The test files, grouped by what they drive. `npm test` runs every group; `npm run test:unit`
// runs `unit` alone (no system packages, no services, no other processes: under a minute
// after the build). A new test file lands in a group by where it lives: next to its module
// it is a unit test unless it matches SANDBOX or STORE; under test/ it is cross-process.
//   node scripts/test.mjs --list-groups      prints each group's files
const SANDBOX = /\/executors\/(container|warm-pool|fast\/fast-path|environments\/(environments|debootstrap|eviction)|vm\/vm(-snapshot)?)\.test\.js$/;
const STORE = /\/store\/postgres-[^/]*\.test\.js$/;
const VM = /\/test\/(local-vm|sandbox-escape-vm)\.test\.js$/;
const BROWSER = /\/test\/([^/]*dashboard|[^/]*-ui)\.test\.js$/;

export const GROUPS = {
  unit: 'pure logic next to its module: parsers, policies, bounds, stores on SQLite, the app\'s wiring against a stand-in electron',
  sandbox: 'real podman and QEMU executors (containers, the fast path, environments, VMs)',
  store: 'the PostgreSQL store (needs CROWDBAKE_TEST_POSTGRES or root to start Debian\'s cluster)',
  browser: 'pages in Chromium against a real master and agent',
  vm: 'latent VM workers and the VM escape suite (QEMU guests running workers)',
  buildbot: 'a real BuildBot 3.7 master and the stock worker',
  integration: 'real masters and workers as processes: end to end, adversaries, faults (fault-farm and fault-partition: three masters on PostgreSQL; fault-partition also root and ip netns), idle sources',
};

/** The group of a compiled test file (a path under dist/). */
export function groupOf(file) {
  const f = file.replaceAll('\\', '/');
  if (f.includes('/dist/test/')) {
    if (f.includes('/dist/test/buildbot/')) return 'buildbot';
    if (VM.test(f)) return 'vm';
    if (BROWSER.test(f)) return 'browser';
    return 'integration';
  }
  if (SANDBOX.test(f)) return 'sandbox';
  if (STORE.test(f)) return 'store';
  return 'unit';
}

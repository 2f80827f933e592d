import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dashboardWindowOptions, isDashboardUrl, isExternalUrl, secureWebPreferences } from './window-options.js';

test('the web preferences keep context isolation and the sandbox on and Node out', () => {
  const p = secureWebPreferences('/x/preload.cjs');
  assert.equal(p.contextIsolation, true);
  assert.equal(p.sandbox, true);
  assert.equal(p.nodeIntegration, false);
  assert.equal(p.nodeIntegrationInWorker, false);
  assert.equal(p.nodeIntegrationInSubFrames, false);
  assert.equal(p.webSecurity, true);
  assert.equal(p.allowRunningInsecureContent, false);
  assert.equal(p.webviewTag, false);
  assert.equal(p.preload, '/x/preload.cjs');
});

test('the window options carry the secure preferences and start hidden', () => {
  const o = dashboardWindowOptions({ preload: '/p.cjs', icon: '/i.png' });
  assert.deepEqual(o.webPreferences, secureWebPreferences('/p.cjs'));
  assert.equal(o.show, false);
  assert.equal(o.icon, '/i.png');
  assert.equal('icon' in dashboardWindowOptions({ preload: '/p.cjs' }), false);
});

test('navigation stays on the dashboard origin', () => {
  const d = 'http://127.0.0.1:8585/';
  assert.equal(isDashboardUrl('http://127.0.0.1:8585/#/builds/3', d), true);
  assert.equal(isDashboardUrl('http://127.0.0.1:8585/api/v1/builds/3/log', d), true);
  assert.equal(isDashboardUrl('http://127.0.0.1:8586/', d), false);
  assert.equal(isDashboardUrl('https://127.0.0.1:8585/', d), false);
  assert.equal(isDashboardUrl('http://evil.example/', d), false);
  assert.equal(isDashboardUrl('file:///etc/passwd', d), false);
  assert.equal(isDashboardUrl('not a url', d), false);
});

test('only http(s) links go to the browser', () => {
  assert.equal(isExternalUrl('https://example.org/x'), true);
  assert.equal(isExternalUrl('http://example.org'), true);
  for (const u of ['file:///etc/passwd', 'javascript:alert(1)', 'smb://host/share', 'ms-settings:', '']) assert.equal(isExternalUrl(u), false, u);
});

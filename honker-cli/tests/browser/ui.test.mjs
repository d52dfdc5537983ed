// `honker ui` in a real browser: Debian's chromium, headless, driven by playwright-core.
//
// It loads the overview and checks its counts against the database (read by the `honker`
// command, another process), enqueues from another process and sees the page change without a
// reload, opens a job, requeues a dead job through the page and checks the database, checks that
// an XSS payload renders as text, and that a hidden tab closes its event stream.
// Screenshots go to $SCREENSHOTS (default <repo>/target/ui-screenshots).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../..');
const target = process.env.CARGO_TARGET_DIR || join(repo, 'target');
const HONKER = process.env.HONKER_BIN || join(target, 'debug', 'honker');
const SHOTS = process.env.SCREENSHOTS || join(target, 'ui-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOKEN = 'browser-test-token-0123456789';
const DEADLINE = 30_000; // generous: the machine may be busy; nothing asserts a timing

let dir, db, ui, base, browser, page;

const honker = (...args) => execFileSync(HONKER, args, { encoding: 'utf8' });
const stats = () => Object.fromEntries(honker('queue', 'stats', '--db', db, '--json')
  .trim().split('\n').filter(Boolean).map(l => JSON.parse(l)).map(q => [q.queue, q]));
const shot = name => page.screenshot({ path: join(SHOTS, name), fullPage: true });

async function api(path) {
  const r = await fetch(base + path, { headers: { 'X-Honker-Token': TOKEN } });
  assert.equal(r.status, 200, path);
  return r.json();
}

async function waitFor(what, cond) {
  const end = Date.now() + DEADLINE;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise(r => setTimeout(r, 50));
  }
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'honker-ui-'));
  db = join(dir, 'app.db');
  honker('migrate', '--db', db);
  honker('enqueue', '--db', db, '--queue', 'mail', '{"to":"ada@example.com","user":{"id":7}}');
  honker('enqueue', '--db', db, '--queue', 'mail', '{"to":"bob@example.com","user":{"id":8}}');
  honker('enqueue', '--db', db, '--queue', 'mail', '{"to":"cy@example.com","user":{"id":9}}', '--delay-ms', '3600000');
  // A dead letter whose payload and error are markup.
  honker('enqueue', '--db', db, '--queue', 'billing', '--max-attempts', '1',
    '{"note":"<script>window.__xss=1</script><img src=x onerror=\\"window.__xss=2\\">"}');
  honker('worker', '--db', db, '--queue', 'billing', '--max-jobs', '1', '--quiet', '--',
    'sh', '-c', 'echo "card <b>declined</b> <script>window.__xss=3</script>" >&2; exit 1');
  // A queue with a history, so its chart counts acked jobs exactly.
  honker('queue', 'configure', '--db', db, '--queue', 'work', '--set', '{"keep_history_ms":3600000}');
  for (let i = 0; i < 12; i++) honker('enqueue', '--db', db, '--queue', 'work', JSON.stringify({ i }));
  honker('worker', '--db', db, '--queue', 'work', '--max-jobs', '12', '--quiet', '--', 'true');
  honker('stream', 'publish', '--db', db, 'orders', '{"order":1}');
  honker('stream', 'publish', '--db', db, 'orders', '{"order":2}');
  honker('cron', 'add', '--db', db, 'nightly-report', '0 3 * * *', 'reports', '{"kind":"nightly"}', '--tz', 'Europe/Berlin');
  honker('notify', '--db', db, '--channel', 'pings', '{"hello":1}');

  ui = spawn(HONKER, ['ui', '--db', db, '--bind', '127.0.0.1:0', '--allow-writes', '--token', TOKEN],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('honker ui printed no address')), DEADLINE);
    createInterface({ input: ui.stdout }).once('line', l => { clearTimeout(t); res(l); });
  });
  base = first.match(/http:\/\/[^/]+/)[0];
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.on('dialog', d => d.accept());
  page.on('pageerror', e => { throw e; });
});

after(async () => {
  if (browser) await browser.close();
  if (ui) ui.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const cell = (queue, state) => page.locator(`#queues tr[data-queue="${queue}"] td[data-count="${state}"]`);

test('the overview shows the counts the database holds', async () => {
  await page.goto(`${base}/#token=${TOKEN}`);
  await page.locator('#queues').waitFor({ timeout: DEADLINE });
  const s = stats();
  for (const [queue, q] of Object.entries(s)) {
    for (const state of ['pending', 'scheduled', 'running', 'dead']) {
      assert.equal(await cell(queue, state).innerText(), String(q[state]), `${queue} ${state}`);
    }
  }
  assert.equal(s.mail.pending, 2);
  assert.equal(s.mail.scheduled, 1);
  assert.equal(s.billing.dead, 1);
  // The token left the address bar; the write badge shows.
  assert.equal(new URL(page.url()).hash, '#/overview');
  assert.equal(await page.locator('#mode').innerText(), 'actions on');
  assert.match(await page.locator('#cron').innerText(), /nightly-report/);
  assert.match(await page.locator('#streams').innerText(), /orders/);
  await waitFor('the live indicator', async () => (await page.locator('#live').innerText()) === 'live');
  await shot('overview.png');
});

test('a job enqueued by another process appears without a reload', async () => {
  await page.evaluate(() => { window.__sameDocument = true; });
  const changes = Number(await page.evaluate(() => document.body.dataset.changes || 0));
  const before = Number(await cell('mail', 'pending').innerText());
  honker('enqueue', '--db', db, '--queue', 'mail', '{"to":"dee@example.com","user":{"id":10}}');
  await waitFor('the pending count to move', async () => Number(await cell('mail', 'pending').innerText()) === before + 1);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
  assert.ok(Number(await page.evaluate(() => document.body.dataset.changes)) > changes, 'a pushed change drove it');
  assert.equal(stats().mail.pending, before + 1);
});

test('the job list filters by a key inside the payload', async () => {
  await page.goto(`${base}/#/jobs?queue=mail&key=user.id&value=8`);
  await page.locator('#jobs tr[data-job]').first().waitFor({ timeout: DEADLINE });
  const rows = page.locator('#jobs tr[data-job]');
  assert.equal(await rows.count(), 1);
  assert.match(await rows.first().innerText(), /bob@example\.com/);
  assert.equal(await page.locator('#count').innerText(), '1 matching');
  await shot('jobs-filtered.png');
});

test('a dead job with markup in it renders as text, and requeues through the page', async () => {
  await page.goto(`${base}/#/jobs?state=dead`);
  const row = page.locator('#jobs tr[data-job]').first();
  await row.waitFor({ timeout: DEADLINE });
  const id = await row.getAttribute('data-job');
  assert.match(await row.innerText(), /<script>window.__xss=1<\/script>/);
  await row.locator('a').first().click();
  await page.locator('#payload').waitFor({ timeout: DEADLINE });
  assert.equal(await page.locator('#job-id').innerText(), id);
  const payload = JSON.parse(await page.locator('#payload').innerText());
  assert.equal(payload.note, '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">');
  assert.match(await page.locator('main').innerText(), /card <b>declined<\/b> <script>window.__xss=3<\/script>/);
  // None of it became markup, and none of it ran.
  assert.equal(await page.locator('main script, main img, main b').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await shot('job-dead.png');

  await page.getByRole('button', { name: 'Requeue (retry now)' }).click();
  await waitFor('the page to show the job pending', async () =>
    (await page.locator('h2 .state').first().innerText()) === 'pending');
  const s = stats();
  assert.equal(s.billing.dead, 0);
  assert.equal(s.billing.pending, 1);
  const jobs = honker('queue', 'jobs', '--db', db, '--queue', 'billing', '--json').trim().split('\n').map(l => JSON.parse(l));
  assert.equal(String(jobs[0].id), id);
  assert.equal(jobs[0].state, 'pending');
  assert.equal(jobs[0].attempts, 0);
  await shot('job-requeued.png');
});

test('cron and workers pages render', async () => {
  await page.goto(`${base}/#/cron`);
  await page.locator('#cron tr[data-schedule="nightly-report"]').waitFor({ timeout: DEADLINE });
  assert.match(await page.locator('#cron').innerText(), /Europe\/Berlin/);
  await shot('cron.png');
  await page.goto(`${base}/#/workers`);
  await page.locator('#workers').waitFor({ timeout: DEADLINE });
  await shot('workers.png');
});

test('a hidden tab closes its event stream, and a shown one reopens it', async () => {
  await page.goto(`${base}/#/overview`);
  await waitFor('one open stream', async () => (await api('/api/overview')).streams_open >= 1);
  const open = (await api('/api/overview')).streams_open;
  // Headless chromium has no window to hide; the page sees what a hidden tab would.
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  assert.equal(await page.locator('#live').innerText(), 'paused (tab hidden)');
  // The server notices a closed stream when a write to it fails: the first write after the
  // browser closed usually still lands in the socket, so commit until one fails (the keep-alive
  // would find it too, within 20 s).
  let n = 0;
  await waitFor('the stream to close', async () => {
    if (n++ % 8 === 0) honker('notify', '--db', db, '--channel', 'pings', JSON.stringify({ wake: n }));
    return (await api('/api/overview')).streams_open < open;
  });
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await waitFor('the stream to reopen', async () => (await api('/api/overview')).streams_open >= open);
});

// The console in real headless Chromium (Debian's), driven by playwright-core.
// Run by hack/browser-tests.sh (the dir store) and by tests/e2e/console.sh (a real cluster), which
// set KEYGATE_BIN, KEYGATE_PLAYWRIGHT, KEYGATE_SCREENSHOTS, and choose the target:
//
// - KEYGATE_CONSOLE_TARGET=dir (the default): one keygate store in a temporary directory, with
//   `keygate serve` answering TokenReviews from it and `keygate console --no-open` managing it.
// - KEYGATE_CONSOLE_TARGET=cluster: a console already started with `--store kube` and a user's
//   own kubeconfig (KEYGATE_CONSOLE_URL, KEYGATE_CONSOLE_KUBECONFIG), so every action goes
//   through the AccessKey API of a real kube-apiserver; the cluster's keygate webhook
//   (KEYGATE_WEBHOOK_URL, KEYGATE_WEBHOOK_CERTS_DIR) says what a token is worth, and the kubeconfig
//   the page offers is tried with kubectl against KEYGATE_APISERVER_URL.
//
// Either way the same tests run, and what the page does is checked against what the webhook then
// says about the token. KEYGATE_MINTED_SECRETS, when set, is a file to which the secret of every
// token seen is appended, so the caller can check that no log holds one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.KEYGATE_PLAYWRIGHT ?? 'playwright-core');
const BIN = process.env.KEYGATE_BIN;
const SHOTS = process.env.KEYGATE_SCREENSHOTS;
assert.ok(BIN, 'KEYGATE_BIN: the keygate binary to test');

function need(name) {
  const v = process.env[name];
  assert.ok(v, `${name} must be set for KEYGATE_CONSOLE_TARGET=cluster`);
  return v;
}

const work = mkdtempSync(path.join(tmpdir(), 'keygate-browser-'));
const keysDir = path.join(work, 'keys');
const dataDir = path.join(work, 'data');
const env = { ...process.env, USER: 'alice', KEYGATE_LOG: 'warn' };
for (const v of ['KEYGATE_STORE', 'KUBECONFIG', 'KEYGATE_KUBECONFIG', 'KEYGATE_CONTEXT']) delete env[v];
const children = [];
let browser;
let context;
let page;
let consoleUrl; // with the session secret
let origin; // http://127.0.0.1:PORT
let webhook; // { url, certs }: where TokenReviews go, and the CA and client certificate for it
const problems = []; // CSP violations and script errors seen by the browser

// What differs between the two stores; the tests themselves are the same.
const targets = {
  dir: {
    shot: (name) => `console-${name}.png`,
    cli: ['--store', `dir:${keysDir}`, '--data-dir', dataDir],
    server: 'https://kube.example.test:6443', // given with --server: no cluster here
    where: /^dir store .*keys · acting as alice$/,
    roles: { backup: 'edit', breakglass: 'admin' },
    backupNamespace: 'backups',
    settle: 5000,
    lastUsed: true,
    // Inherited rights need a cluster to ask: the dir store refuses them next to the choice.
    refusal: { rights: /^inherit my rights:/, status: 422, where: '#rights-error', says: /cannot inherit your rights/ },
    async start() {
      const servePort = await freePort();
      const adminPort = await freePort();
      const serve = spawn(BIN, [...this.cli, 'serve', '--listen', `127.0.0.1:${servePort}`,
        '--admin-listen', `127.0.0.1:${adminPort}`, '--last-used-interval', '200ms'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(serve);
      await eventually('keygate serve to be ready', () => new Promise((resolve) => {
        http.get(`http://127.0.0.1:${adminPort}/readyz`, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        }).on('error', () => resolve(false));
      }), 30000);
      const cons = spawn(BIN, [...this.cli, 'console', '--no-open', '--server', this.server],
        { env, stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(cons);
      const url = await new Promise((resolve, reject) => {
        readline.createInterface({ input: cons.stdout }).once('line', resolve);
        cons.once('exit', (code) => reject(new Error(`keygate console exited with ${code}`)));
      });
      return { url, webhook: { url: `https://127.0.0.1:${servePort}/authenticate`, certs: path.join(dataDir, 'certs') } };
    },
  },
  cluster: {
    shot: (name) => `console-cluster-${name}.png`,
    get cli() { return ['--store', 'kube', '--kubeconfig', need('KEYGATE_CONSOLE_KUBECONFIG')]; },
    get server() { return need('KEYGATE_APISERVER_URL'); }, // the console's default: the user's kubeconfig
    // kube-apiserver 1.20 has no SelfSubjectReview: the name comes from the kubeconfig.
    get where() { return new RegExp(`^cluster ${this.server.replace(/[.]/g, '\\.')}, AccessKey API · acting as alice`); },
    // What alice, the e2e suite's self-service user, may grant: view, anywhere.
    roles: { backup: 'view', breakglass: 'view' },
    backupNamespace: 'default',
    // The webhook follows the record Secrets through a watch, and kube-apiserver caches answers.
    settle: 20000,
    // The e2e suite's webhook writes last use to the key's Lease every second (hack/e2e.sh);
    // the API, another process, reads it back.
    lastUsed: true,
    // A role alice may not grant: the AccessKey API's 403, naming the right she lacks.
    refusal: { rights: /^edit:/, status: 403, where: '#form-error', says: /Not allowed \(403\): alice may not bind .*"edit"/ },
    kubectl: true,
    async start() {
      return { url: need('KEYGATE_CONSOLE_URL'), webhook: { url: need('KEYGATE_WEBHOOK_URL'), certs: need('KEYGATE_WEBHOOK_CERTS_DIR') } };
    },
  },
};
const targetName = process.env.KEYGATE_CONSOLE_TARGET ?? 'dir';
const target = targets[targetName];
assert.ok(target, `KEYGATE_CONSOLE_TARGET=${targetName}: expected dir or cluster`);

// --- helpers -------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function eventually(what, check, ms = target.settle) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function keygate(...args) {
  return execFileSync(BIN, [...target.cli, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// Notes a token's secret for the caller's log check (kg_<22-character ID>_<secret>).
function remember(token) {
  if (process.env.KEYGATE_MINTED_SECRETS && token) appendFileSync(process.env.KEYGATE_MINTED_SECRETS, `${token.slice(26)}\n`);
  return token;
}

// `keygate keys create ARGS -o json` on the target's store: the key's ID.
function mint(...args) {
  const key = JSON.parse(keygate('keys', 'create', ...args, '-o', 'json'));
  remember(key.token);
  return key.id;
}

// Asks keygate's webhook about a token, as kube-apiserver does (TokenReview, client certificate).
function review(token) {
  const body = JSON.stringify({
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token },
  });
  const url = new URL(webhook.url);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        agent: false, // no idle connection left to keep keygate serve (or this process) waiting
        ca: readFileSync(path.join(webhook.certs, 'ca.crt')),
        cert: readFileSync(path.join(webhook.certs, 'client.crt')),
        key: readFileSync(path.join(webhook.certs, 'client.key')),
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let data = '';
        res.on('data', (d) => (data += d));
        res.on('end', () => resolve(JSON.parse(data).status));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const accepted = async (token) => (await review(token)).authenticated === true;

async function shot(name, p = page) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await p.screenshot({ path: path.join(SHOTS, target.shot(name)), fullPage: true });
}

// The session cookie as the browser holds it, for requests made from node.
async function cookieHeader() {
  const cookies = await context.cookies(origin);
  return cookies.map((c) => `${c.name}=${c.value}`).join('; ');
}

async function csrfToken() {
  await page.goto(`${origin}/`);
  return page.locator('input[name="csrf"]').first().getAttribute('value');
}

function row(name) {
  return page.locator('tr', { has: page.locator('.kname', { hasText: new RegExp(`^${name}$`) }) });
}

// The state column of every row the list shows.
async function visibleStates() {
  return page.locator('tbody tr:visible td:nth-child(5)').allInnerTexts();
}

// --- setup ---------------------------------------------------------------------------------

before(async () => {
  // A few keys made with the command line, so the list has something to show.
  mint('--name', 'grafana', '--role', 'view', '--description', 'dashboards');
  mint('--name', 'backup-job', '--role', target.roles.backup, '--description', 'nightly backups',
    '--namespace-scope', target.backupNamespace, '--expires', '14d');
  const breakglass = mint('--name', 'ops-breakglass', '--role', target.roles.breakglass);
  keygate('keys', 'disable', breakglass);

  const started = await target.start();
  consoleUrl = started.url;
  webhook = started.webhook;
  origin = new URL(consoleUrl).origin;

  browser = await chromium.launch({
    executablePath: process.env.KEYGATE_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  context.setDefaultTimeout(10000);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  page = await context.newPage();
  // Chromium also reports every 4xx answer as a console error; the refusals are on purpose.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
});

// SIGTERM, then SIGKILL if it has not exited within 5 s.
function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

after(async () => {
  await browser?.close();
  await Promise.all(children.map(stop));
  rmSync(work, { recursive: true, force: true });
});

// --- the tests -------------------------------------------------------------------------------

test('console prints a loopback URL with a session secret', () => {
  assert.match(consoleUrl, /^http:\/\/127\.0\.0\.1:\d+\/\?s=[A-Za-z0-9_-]{43}$/);
});

test('a request without the session secret is refused', async () => {
  const bare = await fetch(`${origin}/`);
  assert.equal(bare.status, 403);
  const text = await bare.text();
  assert.match(text, /No console session/);
  assert.doesNotMatch(text, /grafana/);
  const wrong = await fetch(`${origin}/?s=not-the-secret`);
  assert.equal(wrong.status, 403);
  // A fresh browser (no cookie) gets the same refusal.
  const other = await browser.newContext();
  const p = await other.newPage();
  const res = await p.goto(`${origin}/keys/new`);
  assert.equal(res.status(), 403);
  await other.close();
});

test('the session link sets a strict HttpOnly cookie and moves on to a clean URL', async () => {
  const res = await page.goto(consoleUrl);
  assert.equal(res.status(), 200);
  await page.waitForURL(`${origin}/`);
  assert.equal(page.url(), `${origin}/`, 'the secret is gone from the address bar');
  const [cookie] = await context.cookies(origin);
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  await page.getByRole('heading', { name: 'Access keys' }).waitFor();
  assert.match(await page.locator('.where').innerText(), target.where, 'the header says which store, as whom');
  const list = await page.reload();
  const h = list.headers();
  assert.match(h['content-security-policy'], /default-src 'none'; script-src 'self'; style-src 'self'/);
  assert.equal(h['x-frame-options'], 'DENY');
  assert.equal(h['referrer-policy'], 'no-referrer');
  assert.equal(h['cache-control'], 'no-store');
});

let token; // the first token of ci-deployer

test('create a key: the token is shown once, copies, downloads, and the webhook accepts it', async () => {
  await page.goto(`${origin}/`);
  // Keyboard: the Create link is reachable and activates with Enter.
  await page.getByRole('link', { name: 'Create key' }).focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(`${origin}/keys/new`);
  // Every control has a label.
  const unlabelled = await page.$$eval('input:not([type=hidden]), select, textarea',
    (els) => els.filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label')).map((e) => e.name));
  assert.deepEqual(unlabelled, []);
  await page.getByLabel('Name', { exact: true }).fill('ci-deployer');
  await page.getByLabel('Description').fill('GitHub Actions, deploys the apps namespace');
  await page.getByRole('radio', { name: /^view:/ }).check();
  await page.getByLabel('Namespace scope').fill('apps');
  await page.getByLabel('Expires').fill('20d');
  await shot('create');

  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${origin}/keys` && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Create key' }).click(),
  ]);
  assert.equal(res.status(), 200);
  assert.equal(res.headers()['cache-control'], 'no-store', 'the reveal is never cached');
  await page.getByRole('heading', { name: 'Key created' }).waitFor();
  await page.getByText('you will not see it again').waitFor();
  token = remember(await page.getByLabel('Token of ci-deployer').inputValue());
  assert.match(token, /^kg_[A-Za-z0-9]{22}_[A-Za-z0-9]+$/);
  await shot('reveal');

  await page.getByRole('button', { name: 'Copy' }).click();
  await page.getByText('Copied to the clipboard.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download kubeconfig' }).click(),
  ]);
  assert.match(download.suggestedFilename(), /^keygate-[a-z0-9]{22}\.kubeconfig$/);
  const kubeconfigFile = await download.path();
  const kubeconfig = readFileSync(kubeconfigFile, 'utf8');
  assert.ok(kubeconfig.includes(`server: ${target.server}`), `the kubeconfig names ${target.server}`);
  assert.ok(kubeconfig.includes(`token: ${token}`), 'the kubeconfig holds the token');
  if (target.kubectl) {
    // As the key, with the kubeconfig as downloaded (the cluster's CA included): a view key
    // scoped to apps may list pods there.
    const can = () => execFileSync('kubectl', ['--kubeconfig', kubeconfigFile, '--request-timeout=10s',
      'auth', 'can-i', 'list', 'pods', '-n', 'apps'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    await eventually('kubectl with the downloaded kubeconfig to be allowed', () => {
      try { return can() === 'yes'; } catch { return false; }
    });
  }

  await eventually('the webhook to accept the new token', () => accepted(token));

  await page.getByRole('link', { name: /back to the keys/ }).click();
  assert.ok(!(await page.content()).includes(token), 'the list never shows the token');
});

test('the list shows owner, role, scope, state and expiry, and filters as you type', async () => {
  await page.goto(`${origin}/`);
  const ci = row('ci-deployer');
  await assert.doesNotReject(ci.waitFor());
  const cells = await ci.locator('td').allInnerTexts();
  assert.equal(cells[1], 'alice');
  assert.equal(cells[2], 'view');
  assert.equal(cells[3], 'apps');
  assert.match(cells[4], /Active/);
  assert.match(cells[5], /in (19|20)d/);
  if (target.lastUsed) {
    // keygate serve writes last use in batches (--last-used-interval).
    await eventually('the last use to show', async () => {
      await page.reload();
      return /^\d+s ago$/.test(await ci.locator('td').nth(6).innerText());
    });
  }
  assert.match(await row('ops-breakglass').locator('td').nth(4).innerText(), /Disabled/);
  await shot('list');

  await page.getByLabel('Search').fill('backups');
  assert.equal(await page.locator('tbody tr:visible').count(), 1);
  await assert.doesNotReject(row('backup-job').waitFor({ state: 'visible' }));
  // The user may hold other disabled keys: every row shown is disabled, ours among them.
  await page.getByLabel('State').selectOption('disabled');
  await page.getByLabel('Search').fill('');
  await assert.doesNotReject(row('ops-breakglass').waitFor({ state: 'visible' }));
  assert.ok((await visibleStates()).every((s) => /Disabled/.test(s)));
  assert.equal(await row('grafana').isVisible(), false);
  // Without the script, the same filter runs on the server.
  await page.goto(`${origin}/?q=grafana`);
  assert.equal(await page.locator('tbody tr:visible').count(), 1);
  await page.goto(`${origin}/?state=disabled`);
  assert.ok(await row('ops-breakglass').isVisible());
  assert.ok((await visibleStates()).every((s) => /Disabled/.test(s)));
  assert.equal(await row('grafana').isVisible(), false);
});

test('regenerate with a grace period: the new token works, the old one too until then', async () => {
  await page.goto(`${origin}/`);
  await page.getByRole('link', { name: 'Regenerate ci-deployer' }).click();
  await page.getByLabel(/Grace period/).fill('1h');
  await page.getByRole('button', { name: 'Regenerate' }).click();
  await page.getByRole('heading', { name: 'New token for ci-deployer' }).waitFor();
  await page.getByText('The old token keeps working until').waitFor();
  const fresh = remember(await page.getByLabel('Token of ci-deployer').inputValue());
  assert.notEqual(fresh, token);
  await eventually('the new token to be accepted', () => accepted(fresh));
  assert.equal(await accepted(token), true, 'the old token works during the grace period');
  // Without grace the old one stops at once.
  await page.goto(`${origin}/keys/${fresh.split('_')[1].toLowerCase()}/regenerate`);
  await page.getByRole('button', { name: 'Regenerate' }).click();
  const newest = remember(await page.getByLabel('Token of ci-deployer').inputValue());
  await eventually('the newest token to be accepted', () => accepted(newest));
  await eventually('the previous token to be refused', async () => !(await accepted(fresh)));
  token = newest;
});

test('deactivate refuses the key, activate brings it back', async () => {
  await page.goto(`${origin}/`);
  await page.getByRole('button', { name: 'Deactivate ci-deployer' }).click();
  await page.getByText('Key “ci-deployer” deactivated').waitFor();
  assert.match(await row('ci-deployer').locator('td').nth(4).innerText(), /Disabled/);
  await eventually('the disabled key to be refused', async () => !(await accepted(token)));

  await page.getByRole('button', { name: 'Activate ci-deployer' }).click();
  await page.getByText('Key “ci-deployer” activated').waitFor();
  await eventually('the enabled key to be accepted', () => accepted(token));
});

test('edit the name and description', async () => {
  await page.goto(`${origin}/`);
  await page.getByRole('link', { name: 'Edit ci-deployer' }).click();
  await page.getByLabel('Name', { exact: true }).fill('ci-deployer-prod');
  await page.getByLabel('Description').fill('deploys apps in production');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Key “ci-deployer-prod” updated.').waitFor();
  await assert.doesNotReject(row('ci-deployer-prod').waitFor());
  assert.equal(await accepted(token), true, 'renaming keeps the token');
  // An empty name is refused next to the field.
  await page.getByRole('link', { name: 'Edit ci-deployer-prod' }).click();
  await page.getByLabel('Name', { exact: true }).fill(' ');
  await page.getByLabel('Name', { exact: true }).press('Enter');
  await page.locator('#name-error').waitFor();
  assert.match(await page.locator('#name-error').innerText(), /must not be empty/);
});

test("the store's refusals (422, and the target's own) are shown in words next to what caused them", async () => {
  await page.goto(`${origin}/keys/new`);
  await page.getByLabel('Name', { exact: true }).fill('too-late');
  await page.getByLabel('Expires').fill('2020-01-01T00:00:00Z');
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${origin}/keys` && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Create key' }).click(),
  ]);
  assert.equal(res.status(), 422);
  const error = page.locator('#expires-error');
  assert.match(await error.innerText(), /in the past/);
  assert.equal(await page.getByLabel('Expires').getAttribute('aria-invalid'), 'true');
  assert.match(await page.getByLabel('Expires').getAttribute('aria-describedby'), /expires-error/);
  assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), 'too-late', 'what was typed is kept');
  // Something that is no time at all is refused by the page itself, in the same place.
  await page.getByLabel('Expires').fill('next tuesday');
  await page.getByRole('button', { name: 'Create key' }).click();
  assert.match(await page.locator('#expires-error').innerText(), /neither a duration/);
  // What this store refuses about the rights asked for.
  const { refusal } = target;
  await page.getByLabel('Expires').fill('');
  await page.getByRole('radio', { name: refusal.rights }).check();
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${origin}/keys` && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Create key' }).click(),
  ]);
  assert.equal(refused.status(), refusal.status);
  assert.match(await page.locator(refusal.where).innerText(), refusal.says);
  assert.ok(!keygate('keys', 'list').includes('too-late'), 'nothing was created');
});

test('a cross-origin POST is refused', async () => {
  const csrf = await csrfToken();
  const name = (await row('grafana').getAttribute('id')).replace(/^key-/, '');
  // From node, with the session cookie and the right CSRF token, but another Origin.
  const forged = await fetch(`${origin}/keys/${name}/disable`, {
    method: 'POST',
    headers: {
      cookie: await cookieHeader(),
      origin: 'http://evil.example',
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: `csrf=${encodeURIComponent(csrf)}`,
    redirect: 'manual',
  });
  assert.equal(forged.status, 403);
  assert.match(await forged.text(), /another origin/);
  // The same request from the console's own origin works, so the Origin is what was refused.
  const own = await fetch(`${origin}/keys/${name}/disable`, {
    method: 'POST',
    headers: {
      cookie: await cookieHeader(),
      origin,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: `csrf=${encodeURIComponent(csrf)}`,
    redirect: 'manual',
  });
  assert.equal(own.status, 303);
  keygate('keys', 'enable', name);

  // From a page of another origin in the same browser: another port of 127.0.0.1 is the same
  // *site*, so the SameSite cookie goes along; the Origin check is what stops it.
  const evil = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form id=f method=post action="${origin}/keys/${name}/disable">
      <input name=csrf value="${csrf}"></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  const evilUrl = `http://127.0.0.1:${evil.address().port}/`;
  try {
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().startsWith(`${origin}/keys/`)),
      page.goto(evilUrl),
    ]);
    assert.equal(res.status(), 403);
    await page.getByText('cannot change keys').waitFor();
  } finally {
    evil.closeAllConnections();
    evil.close();
  }
  await page.goto(`${origin}/`);
  assert.match(await row('grafana').locator('td').nth(4).innerText(), /Active/, 'nothing changed');
  problems.length = 0; // the attacker's page had its own errors, not ours
});

test('readable at phone width', async () => {
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${origin}/`);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 390, `no sideways scrolling (page is ${overflow}px wide)`);
  await shot('phone', phone);
  await phone.close();
});

test('delete asks first, then the key is gone and refused', async () => {
  await page.goto(`${origin}/`);
  await page.getByRole('link', { name: 'Delete ci-deployer-prod' }).click();
  await page.getByRole('heading', { name: 'Delete ci-deployer-prod?' }).waitFor();
  await page.getByText('This cannot be undone').waitFor();
  // Cancel leaves it.
  await page.getByRole('link', { name: 'Cancel' }).click();
  await assert.doesNotReject(row('ci-deployer-prod').waitFor());
  await page.getByRole('link', { name: 'Delete ci-deployer-prod' }).click();
  await page.getByRole('button', { name: 'Delete key' }).click();
  await page.getByText('Key “ci-deployer-prod” deleted.').waitFor();
  assert.equal(await row('ci-deployer-prod').count(), 0);
  await eventually('the deleted key to be refused', async () => !(await accepted(token)));
});

test('no Content-Security-Policy violation or script error on any page', () => {
  assert.deepEqual(problems, []);
});

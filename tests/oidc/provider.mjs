// A real OpenID Connect provider for the end-to-end tests: panva's certified oidc-provider on plain
// HTTP at http://127.0.0.1:PORT, with a one-field sign-in page, no consent screen, and test-only
// endpoints to switch to a brand-new signing key and to end every session.
//
// Usage: node provider.mjs CONFIG.json PORT
//
// The issuer is http://127.0.0.1:PORT. Like Entra ID's login.microsoftonline.com, which serves
// every tenant at https://login.microsoftonline.com/<tenant>/v2.0, the same port also serves the
// issuer http://127.0.0.1:PORT/<tenant>/v2.0 for any <tenant> (letters, digits, '.' and '-'):
// oidc-provider mounted under that path, with its own discovery document, endpoints and `iss`, and
// the same clients, accounts, signing key and sessions. A test that wants a Microsoft tenant's
// issuer names one; nothing changes for a test that uses the root issuer.
//
// CONFIG.json is re-read on every request, so a test can change it while the provider runs:
//   { "clients":  [{ "client_id": "…", "client_secret": "…", "redirect_uris": ["…"] }],
//     "accounts": { "<login name>": { "sub": "…", "email": "…", "email_verified": true,
//                                     "name": "…", "amr": ["pwd", "mfa"], …other claims } } }
// Every account key except `amr` is a claim of the ID token (scopes openid, email, profile);
// `amr` is what the sign-in page reports as the authentication methods, which oidc-provider puts
// into the ID token as given.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const [configPath, portArgument] = process.argv.slice(2);
const port = Number(portArgument);
if (!configPath || !Number.isInteger(port) || port <= 0) {
  console.error('usage: node provider.mjs CONFIG.json PORT');
  process.exit(2);
}
const origin = `http://127.0.0.1:${port}`;

// `/<tenant>/v2.0` at the start of a request target, followed by `/`, `?` or nothing.
const TENANT_MOUNT = /^\/[A-Za-z0-9][A-Za-z0-9.-]*\/v2\.0(?=[/?]|$)/;

// Claims with a fixed scope; every other account key is served under `openid`.
const SCOPED_CLAIMS = { email: ['email', 'email_verified'], profile: ['name'] };
const NOT_CLAIMS = new Set(['sub', 'amr', ...Object.values(SCOPED_CLAIMS).flat()]);

function readConfig() {
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  return { clients: config.clients ?? [], accounts: config.accounts ?? {} };
}

function accountBySub(sub) {
  const { accounts } = readConfig();
  for (const [login, account] of Object.entries(accounts)) {
    if ((account.sub ?? login) === sub) {
      return { login, account };
    }
  }
  return undefined;
}

// Sessions, codes and grants live here rather than in one Provider, so that they survive the
// new Provider a key rotation (or a new claim name) brings. Clients come from the config file.
const store = new Map();

class TestAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    if (this.model === 'Client') {
      const client = readConfig().clients.find((c) => c.client_id === id);
      return client && {
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        ...client,
      };
    }
    const entry = store.get(this.key(id));
    if (!entry || entry.expiresAt <= Date.now()) {
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    for (const [key, { payload, expiresAt }] of store) {
      if (key.startsWith(`${this.model}:`) && payload.uid === uid && expiresAt > Date.now()) {
        return payload;
      }
    }
    return undefined;
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) {
      entry.payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of store) {
      if (payload.grantId === grantId) {
        store.delete(key);
      }
    }
  }
}

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

// Cookies stay valid across Provider instances.
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

// `mount` is '' for the root issuer, or `/<tenant>/v2.0`.
function buildProvider(mount, signingKey, extraClaims) {
  const provider = new Provider(`${origin}${mount}`, {
    adapter: TestAdapter,
    jwks: { keys: [signingKey] },
    cookies: { keys: cookieKeys },
    // oidc-provider fills `amr` from the sign-in result; under `openid` it is always sent.
    claims: {
      acr: null,
      auth_time: null,
      sid: null,
      iss: null,
      openid: ['sub', 'amr', ...extraClaims],
      ...SCOPED_CLAIMS,
    },
    // Every claim of the granted scopes goes into the ID token, not only to userinfo.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 3600, IdToken: 300, Interaction: 600, Session: 3600 },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `${mount}/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const found = accountBySub(sub);
      if (!found) {
        return undefined;
      }
      const { amr: _amr, ...claims } = found.account;
      return { accountId: sub, claims: async () => ({ ...claims, sub }) };
    },
    // No consent screen: whatever a configured client asks for is granted.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      const grant = (grantId && await oidc.provider.Grant.find(grantId))
        || new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      grant.addOIDCClaims([...oidc.requestParamClaims]);
      await grant.save();
      return grant;
    },
  });
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
    provider.on(event, (_ctx, error) => console.error(`${event}: ${error.message} ${error.error_description ?? ''}`));
  }
  return provider;
}

let signingKey = newSigningKey();
let extraClaims = [];
// One Provider per mount ('' or `/<tenant>/v2.0`), made on its first request and made again
// with every new key or claim name.
const providers = new Map();

function providerAt(mount) {
  let found = providers.get(mount);
  if (!found) {
    const provider = buildProvider(mount, signingKey, extraClaims);
    found = { provider, handle: provider.callback() };
    providers.set(mount, found);
  }
  return found;
}

// A claim name the config introduces needs a Provider that knows it.
function refreshClaims() {
  const names = new Set();
  for (const account of Object.values(readConfig().accounts)) {
    Object.keys(account).filter((name) => !NOT_CLAIMS.has(name)).forEach((name) => names.add(name));
  }
  const sorted = [...names].sort();
  if (sorted.join(' ') !== extraClaims.join(' ')) {
    extraClaims = sorted;
    providers.clear();
  }
}

function rotate() {
  signingKey = newSigningKey();
  providers.clear();
  return signingKey.kid;
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function signInPage(mount, uid, clientId, { login = '', error } = {}) {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in to the test provider</title></head>
<body>
  <h1>Sign in</h1>
  <p>to continue to <span id="client">${escape(clientId)}</span></p>
  ${error ? `<p id="error" role="alert">${escape(error)}</p>` : ''}
  <form method="post" action="${escape(mount)}/interaction/${escape(uid)}/login">
    <label>Login name <input type="text" name="login" value="${escape(login)}" autofocus required></label>
    <button type="submit">Sign in</button>
    <button type="submit" formaction="${escape(mount)}/interaction/${escape(uid)}/abort" formnovalidate>Cancel</button>
  </form>
</body>
</html>
`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(body);
}

// GET /interaction/UID: the sign-in page. POST …/login: sign in as that login name.
// POST …/abort: back to the client with error=access_denied.
async function interaction(provider, mount, req, res, uid, step) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, 'text/plain', 'interaction mismatch\n');
    return;
  }
  const clientId = details.params.client_id;
  if (req.method === 'GET' && step === undefined) {
    send(res, 200, 'text/html; charset=utf-8', signInPage(mount, uid, clientId));
  } else if (req.method === 'POST' && step === 'login') {
    const login = (await readForm(req)).get('login') ?? '';
    const account = readConfig().accounts[login];
    if (!account) {
      const page = signInPage(mount, uid, clientId, { login, error: `Unknown login name “${login}”.` });
      send(res, 200, 'text/html; charset=utf-8', page);
      return;
    }
    const result = { login: { accountId: account.sub ?? login, amr: account.amr, remember: false } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } else if (req.method === 'POST' && step === 'abort') {
    const result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } else {
    send(res, 405, 'text/plain', 'method not allowed\n');
  }
}

// POST /__test/rotate: a new signing key, its kid in the answer.
// POST /__test/sign-out: ends every provider session, so the sign-in page shows again.
function testControl(req, res, pathname) {
  if (req.method !== 'POST') {
    send(res, 405, 'text/plain', 'POST only\n');
  } else if (pathname === '/__test/rotate') {
    send(res, 200, 'application/json', `${JSON.stringify({ kid: rotate() })}\n`);
  } else if (pathname === '/__test/sign-out') {
    for (const key of store.keys()) {
      if (key.startsWith('Session:')) {
        store.delete(key);
      }
    }
    res.writeHead(204);
    res.end();
  } else {
    send(res, 404, 'text/plain', 'not found\n');
  }
}

const server = http.createServer(async (req, res) => {
  try {
    const { pathname } = new URL(req.url, origin);
    if (pathname.startsWith('/__test/')) {
      testControl(req, res, pathname);
      return;
    }
    refreshClaims();
    // A tenant's issuer: the rest of the target goes to its Provider, which learns where it is
    // mounted as it does under Express (`originalUrl`, `baseUrl`), for the URLs it hands out.
    const mount = req.url.match(TENANT_MOUNT)?.[0] ?? '';
    const { provider, handle } = providerAt(mount);
    const rest = pathname.slice(mount.length) || '/';
    const step = rest.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?$/);
    if (step) {
      await interaction(provider, mount, req, res, step[1], step[2]);
      return;
    }
    if (mount) {
      req.originalUrl = req.url;
      req.baseUrl = mount;
      req.url = req.url.slice(mount.length).replace(/^(?!\/)/, '/');
    }
    handle(req, res);
  } catch (error) {
    console.error(error);
    if (!res.headersSent) {
      send(res, error.statusCode ?? 500, 'text/plain', `${error.message}\n`);
    }
  }
});

server.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${origin}`));

// The harness holds our stdin: when the test process goes, however it goes, so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

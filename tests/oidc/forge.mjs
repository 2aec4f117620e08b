// A forging OpenID Connect provider for the end-to-end tests: it signs in nobody, redirects every
// authorization request straight back with a code, and issues ID tokens whose claims, key and
// header a test sets with POST /__test/next — the cases a real provider cannot be made to produce.
// Client secrets, redirect URIs and PKCE are checked, so the happy path is a real code flow.
//
// Usage: node forge.mjs CONFIG.json PORT
//
// CONFIG.json is re-read on every request:
//   { "clients": [{ "client_id": "…", "client_secret": "…", "redirect_uris": ["…"] }],
//     "claims":  { "sub": "…", "email": "…", "email_verified": true, …} }   // every token's claims
//
// POST /__test/next with JSON, for the next token only (a null claim is left out of the token):
//   { "claims": { "aud": "someone-else", "exp": 1, "nonce": null, … },
//     "kid": "unknown-kid",           // the header's kid (the signature stays the forge's)
//     "sign_with_other_key": true,    // sign with a key the JWKS does not list
//     "alg": "none" | "HS256" }       // unsigned, or HMAC with the client secret
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const [configPath, portArgument] = process.argv.slice(2);
const port = Number(portArgument);
if (!configPath || !Number.isInteger(port) || port <= 0) {
  console.error('usage: node forge.mjs CONFIG.json PORT');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const TOKEN_LIFETIME = 300;
const CODE_LIFETIME_MS = 60_000;

const DEFAULT_CLAIMS = { sub: 'forged-user', email: 'user@forge.example', email_verified: true };

function readConfig() {
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  return { clients: config.clients ?? [], claims: { ...DEFAULT_CLAIMS, ...config.claims } };
}

function newKey() {
  return crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
}

const signingKey = newKey();
const signingKid = `forge-${crypto.randomUUID()}`;
// Signs what `sign_with_other_key` asks for; never published.
const otherKey = newKey();

const codes = new Map();
const userinfo = new Map();
let nextSpec = {};

const b64url = (data) => Buffer.from(data).toString('base64url');

function jwt(claims, spec, clientSecret) {
  const alg = spec.alg ?? 'RS256';
  const header = { alg, typ: 'JWT', kid: spec.kid ?? signingKid };
  if (alg === 'none') {
    delete header.kid;
  }
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  let signature;
  if (alg === 'none') {
    signature = Buffer.alloc(0);
  } else if (alg === 'HS256') {
    signature = crypto.createHmac('sha256', clientSecret).update(input).digest();
  } else if (alg === 'RS256') {
    signature = crypto.sign('sha256', Buffer.from(input), spec.sign_with_other_key ? otherKey : signingKey);
  } else {
    throw new Error(`the forge cannot sign with ${alg}`);
  }
  return `${input}.${b64url(signature)}`;
}

function discovery() {
  return {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    userinfo_endpoint: `${issuer}/userinfo`,
    jwks_uri: `${issuer}/jwks`,
    response_types_supported: ['code'],
    grant_types_supported: ['authorization_code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    code_challenge_methods_supported: ['S256'],
    scopes_supported: ['openid', 'email', 'profile'],
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nonce', 'email', 'email_verified', 'name'],
  };
}

function jwks() {
  const jwk = signingKey.export({ format: 'jwk' });
  return { keys: [{ kty: jwk.kty, n: jwk.n, e: jwk.e, kid: signingKid, alg: 'RS256', use: 'sig' }] };
}

function send(res, status, body, headers = {}) {
  const json = typeof body !== 'string';
  res.writeHead(status, {
    'Content-Type': json ? 'application/json' : 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(json ? `${JSON.stringify(body)}\n` : body);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function redirect(res, uri, params) {
  const location = new URL(uri);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) {
      location.searchParams.set(key, value);
    }
  }
  res.writeHead(302, { Location: location.href, 'Cache-Control': 'no-store' });
  res.end();
}

// GET /authorize: no sign-in, straight back to the client with a code.
function authorize(res, query) {
  const client = readConfig().clients.find((c) => c.client_id === query.get('client_id'));
  const redirectUri = query.get('redirect_uri');
  // Never redirect to a URI the client did not register: answer here instead.
  if (!client || !client.redirect_uris?.includes(redirectUri)) {
    send(res, 400, 'unknown client_id or unregistered redirect_uri\n');
    return;
  }
  const state = query.get('state');
  const fail = (error, description) => redirect(res, redirectUri, { error, error_description: description, state });
  if (query.get('response_type') !== 'code') {
    fail('unsupported_response_type', 'only response_type=code');
  } else if (!query.get('scope')?.split(' ').includes('openid')) {
    fail('invalid_scope', 'scope must include openid');
  } else if (!query.get('code_challenge') || query.get('code_challenge_method') !== 'S256') {
    fail('invalid_request', 'PKCE with code_challenge_method=S256 is required');
  } else {
    const code = crypto.randomBytes(24).toString('base64url');
    codes.set(code, {
      clientId: client.client_id,
      redirectUri,
      nonce: query.get('nonce'),
      codeChallenge: query.get('code_challenge'),
      expiresAt: Date.now() + CODE_LIFETIME_MS,
    });
    redirect(res, redirectUri, { code, state, iss: issuer });
  }
}

// Client authentication by client_secret_basic or client_secret_post.
function clientCredentials(req, form) {
  const authorization = req.headers.authorization;
  if (authorization?.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
      return undefined;
    }
    // RFC 6749 §2.3.1: both halves are form-urlencoded.
    const unform = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: unform(decoded.slice(0, colon)), secret: unform(decoded.slice(colon + 1)) };
  }
  if (form.has('client_secret')) {
    return { id: form.get('client_id'), secret: form.get('client_secret') };
  }
  return undefined;
}

function sameSecret(a, b) {
  const [x, y] = [Buffer.from(String(a)), Buffer.from(String(b))];
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

// POST /token: the authorization code grant, with the next-token spec applied.
async function token(req, res) {
  const form = new URLSearchParams(await readBody(req));
  const config = readConfig();
  const credentials = clientCredentials(req, form);
  const client = credentials && config.clients.find((c) => c.client_id === credentials.id);
  if (!client || !sameSecret(client.client_secret, credentials.secret)) {
    send(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' }, {
      'WWW-Authenticate': 'Basic realm="forge"',
    });
    return;
  }
  const invalidGrant = (description) => send(res, 400, { error: 'invalid_grant', error_description: description });
  if (form.get('grant_type') !== 'authorization_code') {
    send(res, 400, { error: 'unsupported_grant_type' });
    return;
  }
  const code = codes.get(form.get('code'));
  if (!code || code.expiresAt <= Date.now()) {
    invalidGrant('unknown, used or expired code');
    return;
  }
  if (code.clientId !== client.client_id) {
    invalidGrant('code was issued to another client');
    return;
  }
  if (form.get('redirect_uri') !== code.redirectUri) {
    invalidGrant('redirect_uri differs from the authorization request');
    return;
  }
  const verifier = form.get('code_verifier') ?? '';
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || challenge !== code.codeChallenge) {
    invalidGrant('PKCE verification failed');
    return;
  }
  codes.delete(form.get('code'));

  const spec = nextSpec;
  nextSpec = {};
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    aud: client.client_id,
    exp: now + TOKEN_LIFETIME,
    iat: now,
    ...(code.nonce === null ? {} : { nonce: code.nonce }),
    ...config.claims,
    ...spec.claims,
  };
  for (const [name, value] of Object.entries(claims)) {
    if (value === null) {
      delete claims[name];
    }
  }
  const accessToken = crypto.randomBytes(24).toString('base64url');
  userinfo.set(accessToken, { sub: claims.sub, ...config.claims });
  send(res, 200, {
    access_token: accessToken,
    token_type: 'Bearer',
    id_token: jwt(claims, spec, client.client_secret),
    expires_in: TOKEN_LIFETIME,
  });
}

function userinfoFor(req, res) {
  const bearer = req.headers.authorization?.match(/^Bearer (.+)$/i)?.[1];
  const claims = bearer && userinfo.get(bearer);
  if (!claims) {
    send(res, 401, { error: 'invalid_token' }, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
    return;
  }
  send(res, 200, claims);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    const route = `${req.method} ${url.pathname}`;
    if (route === 'GET /.well-known/openid-configuration') {
      send(res, 200, discovery());
    } else if (route === 'GET /jwks') {
      send(res, 200, jwks());
    } else if (route === 'GET /authorize') {
      authorize(res, url.searchParams);
    } else if (route === 'POST /token') {
      await token(req, res);
    } else if (route === 'GET /userinfo' || route === 'POST /userinfo') {
      userinfoFor(req, res);
    } else if (route === 'POST /__test/next') {
      nextSpec = JSON.parse(await readBody(req));
      res.writeHead(204);
      res.end();
    } else {
      send(res, 404, 'not found\n');
    }
  } catch (error) {
    console.error(error);
    if (!res.headersSent) {
      send(res, 500, `${error.message}\n`);
    }
  }
});

server.listen(port, '127.0.0.1', () => console.log(`forge listening on ${issuer}`));

// The harness holds our stdin: when the test process goes, however it goes, so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

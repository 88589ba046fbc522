// A real OIDC provider for tests (oauth2-mock-server), with two additions:
// - the subject of a login is the `login_hint` the test put on the authorize URL, so tests can
//   log in many users;
// - a control API on the same port, under /_control, so a test can make the provider misbehave:
//     POST /_control          {...}  merge into the behaviour (fields of `normal()` below)
//     POST /_control/reset           normal behaviour (an RS256 key), request counts back to zero
//     POST /_control/rotate   {alg}  replace the signing key by a new one (new kid); the old one is retired
//     GET  /_control                 {counts: {path: requests}}
// Usage: node oidc_provider.mjs PORT   (the issuer is http://127.0.0.1:PORT)
import { createServer } from 'node:http';
import { JWKStore, OAuth2Server } from 'oauth2-mock-server';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const server = new OAuth2Server(); // its request handler is served by the server below
server.issuer.url = issuer;
const signingKey = await server.issuer.keys.generate('RS256'); // the store's only key, replaced in place
const subjectOfCode = new Map();

const normal = () => ({
  // per endpoint: 'json' (as the library answers), 'text' (an HTML page), 'error' (500), 'hang' (no answer)
  discovery: 'json', jwks: 'json', token: 'json', userinfo: 'json',
  metadata: {}, // merged into the discovery document; a null value removes the field
  claims: {}, // merged into the id_token's claims; a null value removes the claim
  idToken: 'signed', // 'signed', 'unsigned' (alg none), 'tampered' (a claim changed after signing), 'absent'
});
let behaviour = normal();
let counts = {};

const ENDPOINTS = {
  '/.well-known/openid-configuration': 'discovery', '/jwks': 'jwks', '/token': 'token', '/userinfo': 'userinfo',
};
const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const unb64 = (segment) => JSON.parse(Buffer.from(segment, 'base64url').toString());
const merge = (target, changes) => {
  for (const [name, value] of Object.entries(changes)) {
    if (value === null) delete target[name];
    else target[name] = value;
  }
  return target;
};
const send = (res, status, body, type = 'application/json') => {
  res.writeHead(status, { 'content-type': type });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};

server.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const hint = new URL(req.url, issuer).searchParams.get('login_hint') || 'johndoe';
  subjectOfCode.set(redirect.url.searchParams.get('code'), hint);
});
server.service.on('beforeTokenSigning', (token, req) => {
  const code = req.body && req.body.code;
  if (code && subjectOfCode.has(code)) token.payload.sub = subjectOfCode.get(code);
  if (!('scope' in token.payload)) merge(token.payload, behaviour.claims); // the id_token (no scope)
});
server.service.on('beforeResponse', (response) => {
  const idToken = response.body.id_token;
  if (!idToken) return;
  const [header, payload, signature] = idToken.split('.');
  if (behaviour.idToken === 'absent') delete response.body.id_token;
  if (behaviour.idToken === 'unsigned') response.body.id_token = `${b64({ ...unb64(header), alg: 'none' })}.${payload}.`;
  if (behaviour.idToken === 'tampered') {
    response.body.id_token = `${header}.${b64({ ...unb64(payload), sub: 'mallory' })}.${signature}`;
  }
});
server.service.on('beforeUserinfo', (response, req) => {
  const bearer = (req.headers.authorization || '').replace(/^Bearer /, '');
  const payload = JSON.parse(Buffer.from(bearer.split('.')[1] || 'e30', 'base64url').toString());
  response.body = { sub: payload.sub, preferred_username: payload.sub, email: `${payload.sub}@example.test` };
});

async function rotate(alg) {
  const fresh = await new JWKStore().generate(alg);
  for (const name of Object.keys(signingKey)) delete signingKey[name];
  Object.assign(signingKey, fresh);
}

async function control(req, res, path) {
  let body = '';
  for await (const chunk of req) body += chunk;
  const input = body ? JSON.parse(body) : {};
  if (req.method === 'GET') return send(res, 200, { counts });
  if (path === '/_control/reset') {
    behaviour = normal();
    counts = {};
    if (signingKey.alg !== 'RS256') await rotate('RS256');
  } else if (path === '/_control/rotate') {
    await rotate(input.alg || 'RS256');
  } else {
    Object.assign(behaviour, input);
  }
  return send(res, 200, { behaviour, kid: signingKey.kid });
}

createServer((req, res) => {
  const path = new URL(req.url, issuer).pathname;
  if (path.startsWith('/_control')) {
    control(req, res, path).catch((error) => send(res, 400, { error: String(error) }));
    return;
  }
  counts[path] = (counts[path] || 0) + 1;
  const mode = behaviour[ENDPOINTS[path]];
  if (mode === 'hang') return; // the connection stays open, nothing is answered
  if (mode === 'text') return send(res, 200, '<html><body>Down for maintenance</body></html>', 'text/html');
  if (mode === 'error') return send(res, 500, { error: 'server_error' });
  if (path === '/.well-known/openid-configuration') {
    return server.service.openidConfigurationHandler(req, { json: (doc) => send(res, 200, merge(doc, behaviour.metadata)) });
  }
  return server.service.requestHandler(req, res);
}).listen(port, '127.0.0.1', () => console.log(`oidc provider on ${issuer}`));

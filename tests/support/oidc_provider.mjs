// A real OIDC provider for tests (oauth2-mock-server), with one addition: the subject of a
// login is the `login_hint` the test put on the authorize URL, so tests can log in many users.
// Usage: node oidc_provider.mjs PORT
import { OAuth2Server } from 'oauth2-mock-server';

const port = Number(process.argv[2]);
const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
const subjectOfCode = new Map();

server.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const hint = new URL(req.url, 'http://localhost').searchParams.get('login_hint') || 'johndoe';
  subjectOfCode.set(redirect.url.searchParams.get('code'), hint);
});
server.service.on('beforeTokenSigning', (token, req) => {
  const code = req.body && req.body.code;
  if (code && subjectOfCode.has(code)) token.payload.sub = subjectOfCode.get(code);
});
server.service.on('beforeUserinfo', (response, req) => {
  const bearer = (req.headers.authorization || '').replace(/^Bearer /, '');
  const payload = JSON.parse(Buffer.from(bearer.split('.')[1] || 'e30', 'base64url').toString());
  response.body = { sub: payload.sub, preferred_username: payload.sub, email: `${payload.sub}@example.test` };
});

await server.start(port, '127.0.0.1');
console.log(`oidc provider on ${server.issuer.url}`);

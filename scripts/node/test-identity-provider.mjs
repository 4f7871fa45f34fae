// A real OpenID provider for the OAuth tests (tests/python/test_oauth.py), made with the
// `oidc-provider` package: open dynamic client registration, the authorization code flow with PKCE,
// resource indicators (RFC 8707) issuing RS256 JWT access tokens whose audience is the resource
// asked for, and the client credentials grant for two machine clients. The interaction pages sign in
// the person named by ACCOUNT at once and consent to everything asked: the tests drive the flow
// without a browser.
//
// Environment: PORT (required), ACCOUNT (default `ann`), GROUPS (comma-separated, default `staff`).
// Machine clients: `robot` (tokens for 300 s) and `robot-short` (tokens for 1 s), both with the
// secret `robot-secret`.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const account = process.env.ACCOUNT ?? 'ann';
const groups = (process.env.GROUPS ?? 'staff').split(',').filter(Boolean);

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const machine = (clientId) => ({
  client_id: clientId,
  client_secret: 'robot-secret',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope: 'mcp',
});

const provider = new Provider(issuer, {
  clients: [machine('robot'), machine('robot-short')],
  jwks: { keys: [signing] },
  scopes: ['openid', 'offline_access', 'mcp'],
  claims: { openid: ['sub'], email: ['email'] },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'mcp',
        audience: resource,
        accessTokenTTL: client.clientId === 'robot-short' ? 1 : 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: `${id}@acme.example` }),
  }),
  extraTokenClaims: (ctx, token) =>
    token.accountId ? { email: `${token.accountId}@acme.example`, groups } : undefined,
});

const callback = provider.callback();
const server = createServer(async (req, res) => {
  if (req.url?.startsWith('/interaction/')) {
    try {
      const { prompt, params, session, grantId } = await provider.interactionDetails(req, res);
      let result;
      if (prompt.name === 'login') {
        result = { login: { accountId: account } };
      } else {
        // Consent: everything the client asks for, for the resources it names.
        const grant = grantId
          ? await provider.Grant.find(grantId)
          : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        const missing = prompt.details;
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
          grant.addResourceScope(resource, scopes.join(' '));
        }
        result = { consent: { grantId: await grant.save() } };
      }
      await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    } catch (error) {
      res.statusCode = 400;
      res.end(String(error));
    }
    return;
  }
  callback(req, res);
});
// Node closes a kept-alive connection after 5 s idle by default, which races a client reusing it on
// a loaded machine ("server disconnected"): keep connections as long as the clients do.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(port, '127.0.0.1', () => console.log(`listening on ${issuer}`));

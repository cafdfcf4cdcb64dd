/**
 * The JWT verifier (src/auth/jwt.ts) verifies HS256 tokens with node:crypto, synchronously,
 * instead of through jose (WebCrypto). It must accept exactly what jose's jwtVerify accepts
 * with the options the gateway used (algorithms HS256, required sub and exp), and refuse the
 * rest: every case below runs through both and the verdicts (and the expiry reason) must match.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { jwtVerify, errors as joseErrors } from 'jose';
import { JwtVerifier } from '../../src/auth/jwt.ts';
import { GatewayError } from '../../src/errors/gateway-error.ts';

const SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';
const NOW_MS = 1_800_000_000_500;
const NOW = Math.floor(NOW_MS / 1000);
const key = new TextEncoder().encode(SECRET);

const b64 = (value: unknown): string =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

function signRaw(header: string, payload: string, secret = SECRET): string {
  const mac = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${mac}`;
}

function token(header: unknown, claims: unknown, secret = SECRET): string {
  return signRaw(b64(header), b64(claims), secret);
}

const good = { sub: 'u1', tid: 't1', role: 'agent', iat: NOW - 10, exp: NOW + 3600 };
const hs = { alg: 'HS256', typ: 'JWT' };

type Verdict = 'ok' | 'expired' | 'invalid';

async function jose(jwt: string): Promise<Verdict> {
  try {
    await jwtVerify(jwt, key, {
      algorithms: ['HS256'],
      currentDate: new Date(NOW_MS),
      requiredClaims: ['sub', 'exp'],
    });
    return 'ok';
  } catch (err) {
    return err instanceof joseErrors.JWTExpired ? 'expired' : 'invalid';
  }
}

async function ours(jwt: string): Promise<Verdict> {
  try {
    await new JwtVerifier(SECRET, () => NOW_MS).verify(jwt);
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof GatewayError && err.code === 'unauthorized', String(err));
    if (err.message === 'token lacks sub, tid or a known role') return 'ok'; // jose has no such rule
    return err.message === 'token expired' ? 'expired' : 'invalid';
  }
}

const cases: [string, string][] = [
  ['a good token', token(hs, good)],
  ['no typ', token({ alg: 'HS256' }, good)],
  ['another secret', token(hs, good, 'other-secret')],
  ['alg none, no signature', `${b64({ alg: 'none' })}.${b64(good)}.`],
  ['alg none, signed', token({ alg: 'none' }, good)],
  ['alg HS512 header over an HS256 mac', token({ alg: 'HS512' }, good)],
  ['alg RS256', token({ alg: 'RS256' }, good)],
  ['alg lower case', token({ alg: 'hs256' }, good)],
  ['no alg', token({ typ: 'JWT' }, good)],
  ['header an array', token(['HS256'], good)],
  ['header null', token(null, good)],
  ['header not JSON', signRaw(b64('{alg:HS256}'), b64(good))],
  ['header empty', signRaw('', b64(good))],
  ['payload an array', token(hs, [good])],
  ['payload null', token(hs, null)],
  ['payload a number', token(hs, 42)],
  ['payload not JSON', signRaw(b64(hs), b64('sub=u1'))],
  ['payload empty', signRaw(b64(hs), '')],
  ['payload invalid UTF-8', signRaw(b64(hs), Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url'))],
  ['expired', token(hs, { ...good, exp: NOW - 1 })],
  ['expires right now', token(hs, { ...good, exp: NOW })],
  ['expires in a second', token(hs, { ...good, exp: NOW + 1 })],
  ['exp a string', token(hs, { ...good, exp: String(NOW + 60) })],
  ['exp null', token(hs, { ...good, exp: null })],
  ['no exp', token(hs, { sub: 'u1', tid: 't1', role: 'agent' })],
  ['no sub', token(hs, { tid: 't1', role: 'agent', exp: NOW + 60 })],
  ['nbf in the future', token(hs, { ...good, nbf: NOW + 1 })],
  ['nbf now', token(hs, { ...good, nbf: NOW })],
  ['nbf a string', token(hs, { ...good, nbf: String(NOW) })],
  ['iat in the future (allowed)', token(hs, { ...good, iat: NOW + 1000 })],
  ['iat a string', token(hs, { ...good, iat: 'yesterday' })],
  ['crit b64 true', token({ alg: 'HS256', crit: ['b64'], b64: true }, good)],
  ['crit b64 false', token({ alg: 'HS256', crit: ['b64'], b64: false }, good)],
  ['crit b64 absent', token({ alg: 'HS256', crit: ['b64'] }, good)],
  ['crit unknown', token({ alg: 'HS256', crit: ['exp'], exp: 1 }, good)],
  ['crit empty', token({ alg: 'HS256', crit: [] }, good)],
  ['crit not an array', token({ alg: 'HS256', crit: 'b64', b64: true }, good)],
  ['b64 false without crit (ignored)', token({ alg: 'HS256', b64: false }, good)],
  ['two segments', `${b64(hs)}.${b64(good)}`],
  ['four segments', `${token(hs, good)}.x`],
  ['empty', ''],
  ['signature truncated', token(hs, good).slice(0, -2)],
  // as long as the right one in characters, longer in bytes: timingSafeEqual threw a RangeError
  ['signature with a non-ASCII character', `${token(hs, good).slice(0, -1)}é`],
  [
    'payload tampered',
    (() => {
      const [h = '', , s = ''] = token(hs, good).split('.');
      return `${h}.${b64({ ...good, role: 'service' })}.${s}`;
    })(),
  ],
];

describe('JwtVerifier against jose', () => {
  for (const [name, jwt] of cases) {
    it(name, async () => {
      assert.equal(await ours(jwt), await jose(jwt));
    });
  }

  it('refuses a padded signature, which jose lets through (RFC 7515 §2: base64url without padding)', async () => {
    const padded = `${token(hs, good)}=`;
    assert.equal(await jose(padded), 'ok');
    assert.equal(await ours(padded), 'invalid');
  });

  it('agrees on random claims and headers', async () => {
    const claim = fc.oneof(
      fc.constant(undefined),
      fc.integer({ min: NOW - 5, max: NOW + 5 }),
      fc.string({ maxLength: 3 }),
      fc.constant(null),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          alg: fc.constantFrom('HS256', 'HS384', 'none', undefined),
          typ: fc.constantFrom('JWT', undefined),
        }),
        fc.record({ sub: fc.constantFrom('u', '', undefined), exp: claim, nbf: claim, iat: claim }),
        fc.boolean(),
        async (header, claims, right) => {
          const jwt = token(
            JSON.parse(JSON.stringify(header)),
            { tid: 't', role: 'user', ...JSON.parse(JSON.stringify(claims)) },
            right ? SECRET : 'wrong',
          );
          assert.equal(await ours(jwt), await jose(jwt));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('returns the principal, and signs tokens it accepts', async () => {
    const verifier = new JwtVerifier(SECRET, () => NOW_MS);
    const jwt = await verifier.sign({ sub: 'u9', tid: 't9', role: 'operator' }, 60);
    assert.deepEqual(await verifier.verify(jwt), {
      userId: 'u9',
      tenantId: 't9',
      role: 'operator',
      expiresAt: NOW + 60,
    });
    await assert.rejects(
      verifier.verify(token(hs, { ...good, role: 'root' })),
      /lacks sub, tid or a known role/,
    );
  });

  it('refuses a sub or tid with a lone surrogate: they name keys, and cannot be encoded', async () => {
    const verifier = new JwtVerifier(SECRET, () => NOW_MS);
    for (const claims of [{ sub: 'u\ud800' }, { tid: '\udc00t' }]) {
      await assert.rejects(verifier.verify(token(hs, { ...good, ...claims })), /invalid token/);
    }
  });
});

/**
 * `POST /v1/call/sessions/:id/livekit-token`: tokens checked with the SDK's TokenVerifier
 * (grants, room, identity, lifetime), the access rule, one room per session on every
 * call. Runs on both engines (the session ↔ room binding lives in the engine's store).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TokenVerifier } from 'livekit-server-sdk';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { LK_ENV, LK_KEY, LK_SECRET } from '../helpers/livekit.ts';
import { api, newSession } from './support.ts';

const TTL_S = 120;
let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ ...LK_ENV, LIVEKIT_TOKEN_TTL_S: String(TTL_S) });
});
after(() => gw.stop());

const verifier = new TokenVerifier(LK_KEY, LK_SECRET);
const tokenPath = (sessionId: string) => `/v1/call/sessions/${sessionId}/livekit-token`;

describe('LiveKit participant tokens', () => {
  it("the owner gets a short-lived token that joins exactly the session's room", async () => {
    const s = await newSession(gw);
    const before = Math.floor(Date.now() / 1000);
    const res = await api(gw, 'POST', tokenPath(s.sessionId), s.ownerToken);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const { token, url, room, identity, expiresAt } = res.body;
    assert.deepEqual(Object.keys(res.body).sort(), ['expiresAt', 'identity', 'room', 'token', 'url']);
    assert.equal(url, null, 'no LIVEKIT_URL configured');
    assert.equal(room, `lifeos-${s.sessionId}`);
    const claims = await verifier.verify(token);
    assert.equal(claims.iss, LK_KEY);
    assert.equal(claims.sub, identity);
    assert.match(identity, /^user:user-\d+$/);
    assert.deepEqual(claims.video, {
      roomJoin: true,
      room,
      canUpdateOwnMetadata: false,
      canPublish: true,
      canSubscribe: true,
      canPublishData: true,
    });
    // lifetime: LIVEKIT_TOKEN_TTL_S, and expiresAt says when
    assert.ok(
      claims.exp! - before >= TTL_S - 1 && claims.exp! - before <= TTL_S + 2,
      `exp ${claims.exp! - before}`,
    );
    assert.equal(Date.parse(expiresAt), claims.exp! * 1000);
    assert.equal(claims.attributes?.['lifeos.session'], s.sessionId);
    assert.equal(claims.attributes?.['lifeos.role'], 'user');
  });

  it('every call, by anyone allowed, names the same room', async () => {
    const s = await newSession(gw);
    const rooms = await Promise.all(
      [s.ownerToken, s.ownerToken, s.agentToken, s.agentToken].map(async (t) => {
        const res = await api(gw, 'POST', tokenPath(s.sessionId), t);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return res.body.room as string;
      }),
    );
    assert.deepEqual(new Set(rooms), new Set([`lifeos-${s.sessionId}`]));
  });

  it('grants follow the role: agents are agents, operators only listen', async () => {
    const s = await newSession(gw);
    const agent = await api(gw, 'POST', tokenPath(s.sessionId), s.agentToken);
    const agentClaims = await verifier.verify(agent.body.token);
    assert.equal(agentClaims.kind, 'agent');
    assert.match(agent.body.identity, /^agent:/);
    assert.equal(agentClaims.video?.canPublish, true);

    const operator = await api(gw, 'POST', tokenPath(s.sessionId), await gw.token('op-1', 'operator'));
    assert.equal(operator.status, 200);
    const opClaims = await verifier.verify(operator.body.token);
    assert.equal(operator.body.identity, 'operator:op-1');
    assert.equal(opClaims.video?.roomJoin, true);
    assert.equal(opClaims.video?.canSubscribe, true);
    assert.equal(opClaims.video?.canPublish, false);
    assert.equal(opClaims.video?.canPublishData, false);
    for (const claims of [agentClaims, opClaims]) {
      for (const admin of ['roomAdmin', 'roomCreate', 'roomList', 'roomRecord', 'ingressAdmin']) {
        assert.equal((claims.video as Record<string, unknown>)[admin], undefined, admin);
      }
    }
  });

  it('refuses callers who may not read the session', async () => {
    const s = await newSession(gw);
    const noBearer = await api(gw, 'POST', tokenPath(s.sessionId));
    assert.deepEqual([noBearer.status, noBearer.body.error.code], [401, 'unauthorized']);
    const stranger = await api(gw, 'POST', tokenPath(s.sessionId), await gw.token('someone-else'));
    assert.deepEqual([stranger.status, stranger.body.error.code], [403, 'forbidden']);
    const otherTenant = await api(gw, 'POST', tokenPath(s.sessionId), await gw.token('x', 'agent', 'globex'));
    assert.deepEqual([otherTenant.status, otherTenant.body.error.code], [404, 'session_not_found']);
    const missing = await api(gw, 'POST', tokenPath('cs_nope'), s.ownerToken);
    assert.deepEqual([missing.status, missing.body.error.code], [404, 'session_not_found']);
  });

  it('refuses an ended session', async () => {
    const s = await newSession(gw);
    const path = `/v1/call/sessions/${s.sessionId}/transitions`;
    const failed = await api(gw, 'POST', path, s.ownerToken, { to: 'failed', reason: 'test' });
    assert.equal(failed.status, 200, JSON.stringify(failed.body));
    const res = await api(gw, 'POST', tokenPath(s.sessionId), s.ownerToken);
    assert.deepEqual([res.status, res.body.error.code], [409, 'session_ended']);
  });

  it('501 livekit_not_configured without LIVEKIT_API_KEY', async () => {
    const plain = await startTestGateway();
    try {
      const s = await newSession(plain);
      const res = await api(plain, 'POST', tokenPath(s.sessionId), s.ownerToken);
      assert.deepEqual([res.status, res.body.error.code], [501, 'livekit_not_configured']);
    } finally {
      await plain.stop();
    }
  });
});

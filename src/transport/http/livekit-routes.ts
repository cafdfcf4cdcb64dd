import type { JwtVerifier } from '../../auth/jwt.ts';
import type { CallService } from '../../calls/call-service.ts';
import { GatewayError } from '../../errors/gateway-error.ts';
import type { LiveKitBridge } from '../../livekit/bridge.ts';
import { authenticate } from './auth.ts';
import type { HttpContext, HttpReply } from './context.ts';

export interface LiveKitRouteDeps {
  jwt: JwtVerifier;
  calls: CallService;
  /** Undefined when LiveKit is not configured: both routes answer `livekit_not_configured`. */
  bridge: LiveKitBridge | undefined;
}

/**
 * `POST /v1/call/sessions/:id/livekit-token`: a LiveKit token for the caller to join the
 * session's room. Whoever may read the session may join it (PROTOCOL.md §6); what they
 * may do there depends on their role (src/livekit/tokens.ts).
 */
export async function livekitToken(deps: LiveKitRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  const sessionId = ctx.params[0]!;
  await deps.calls.get(principal, sessionId);
  const bridge = required(deps.bridge);
  return {
    status: 200,
    body: await bridge.issueToken(principal, sessionId),
    headers: { 'cache-control': 'no-store' },
  };
}

/**
 * `POST /v1/webhooks/livekit`: LiveKit's webhook. Authenticated by LiveKit's signature
 * over the raw body (not by a bearer token); 200 for every verified event, including
 * duplicates and events the gateway ignores.
 */
export async function livekitWebhook(deps: LiveKitRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const bridge = required(deps.bridge);
  const outcome = await bridge.receiveWebhook(ctx.rawBody ?? new Uint8Array(), ctx.headers.authorization);
  return { status: 200, body: outcome };
}

function required(bridge: LiveKitBridge | undefined): LiveKitBridge {
  if (!bridge) {
    throw new GatewayError(
      'livekit_not_configured',
      'the LiveKit bridge is off: set LIVEKIT_API_KEY and LIVEKIT_API_SECRET',
    );
  }
  return bridge;
}

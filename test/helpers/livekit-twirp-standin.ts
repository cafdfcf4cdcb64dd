/**
 * A stand-in for LiveKit's RoomService (Twirp, JSON) on 127.0.0.1, for testing the
 * gateway's RoomService adapter with the real livekit-server-sdk client. It is not a
 * LiveKit: it keeps rooms and participants the test puts there. Like LiveKit it checks
 * every request's `Authorization: Bearer <JWT>` (signed with the API secret, issuer =
 * API key) and the grant each method needs, and answers Twirp errors otherwise.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ParticipantInfo, Room } from '@livekit/protocol';
import { TokenVerifier } from 'livekit-server-sdk';

export interface StandinCall {
  method: string;
  body: any;
  /** The verified video grant of the request's token. */
  grant: Record<string, unknown>;
}

export class TwirpStandin {
  readonly rooms = new Map<string, { room: Room; participants: ParticipantInfo[] }>();
  readonly calls: StandinCall[] = [];
  /** Requests refused for their token. */
  readonly refused: string[] = [];
  /** Set to make the next calls fail with HTTP 500 (LiveKit unavailable). */
  failing = false;
  readonly #server: Server;
  readonly #verifier: TokenVerifier;
  #roomN = 0;
  url = '';

  private constructor(key: string, secret: string) {
    this.#verifier = new TokenVerifier(key, secret);
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  static async start(key: string, secret: string): Promise<TwirpStandin> {
    const standin = new TwirpStandin(key, secret);
    await new Promise<void>((resolve) => standin.#server.listen(0, '127.0.0.1', resolve));
    standin.url = `http://127.0.0.1:${(standin.#server.address() as AddressInfo).port}`;
    return standin;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Opens a room (as a first join would), returning it. */
  openRoom(name: string): Room {
    const room = new Room({
      sid: `RM_standin${++this.#roomN}`,
      name,
      creationTime: BigInt(Math.floor(Date.now() / 1000)),
    });
    this.rooms.set(name, { room, participants: [] });
    return room;
  }

  closeRoom(name: string): void {
    this.rooms.delete(name);
  }

  setParticipants(name: string, participants: ParticipantInfo[]): void {
    const entry = this.rooms.get(name);
    if (!entry) throw new Error(`no room ${name}`);
    entry.participants = participants;
  }

  callsOf(method: string): StandinCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const match = /^\/twirp\/livekit\.RoomService\/(\w+)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !match) return twirpError(res, 404, 'bad_route', 'no such method');
    const method = match[1]!;
    let body: any;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch {
      return twirpError(res, 400, 'malformed', 'body is not JSON');
    }
    const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    let grant: Record<string, unknown>;
    try {
      if (!auth) throw new Error('no bearer token');
      const claims = await this.#verifier.verify(auth[1]!);
      grant = (claims.video ?? {}) as Record<string, unknown>;
    } catch (err) {
      this.refused.push(`${method}: ${(err as Error).message}`);
      return twirpError(res, 401, 'unauthenticated', 'invalid token');
    }
    const needed: Record<string, (g: Record<string, unknown>) => boolean> = {
      CreateRoom: (g) => g.roomCreate === true,
      ListRooms: (g) => g.roomList === true,
      ListParticipants: (g) => g.roomAdmin === true && g.room === body.room,
    };
    const allowed = needed[method];
    if (!allowed) return twirpError(res, 404, 'bad_route', `${method} is not stood in for`);
    if (!allowed(grant)) {
      this.refused.push(`${method}: missing grant`);
      return twirpError(res, 403, 'permission_denied', 'missing grant');
    }
    this.calls.push({ method, body, grant });
    if (this.failing) return twirpError(res, 500, 'internal', 'stand-in told to fail');
    switch (method) {
      case 'CreateRoom': {
        const existing = this.rooms.get(body.name);
        const room = existing?.room ?? this.openRoom(body.name);
        room.emptyTimeout = body.emptyTimeout ?? 0;
        room.maxParticipants = body.maxParticipants ?? 0;
        room.metadata = body.metadata ?? '';
        return json(res, room.toJson());
      }
      case 'ListRooms': {
        const names: string[] = body.names ?? [];
        const rooms = [...this.rooms.values()]
          .filter((r) => names.length === 0 || names.includes(r.room.name))
          .map((r) => r.room.toJson());
        return json(res, { rooms });
      }
      case 'ListParticipants': {
        const entry = this.rooms.get(body.room);
        if (!entry) return twirpError(res, 404, 'not_found', 'requested room does not exist');
        return json(res, { participants: entry.participants.map((p) => p.toJson()) });
      }
    }
  }
}

function json(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function twirpError(res: ServerResponse, status: number, code: string, msg: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ code, msg }));
}

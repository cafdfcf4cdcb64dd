import { RoomServiceClient, TwirpError, type ParticipantInfo, type Room } from 'livekit-server-sdk';
import type { LiveKitRoomServiceOp, Metrics } from '../observability/metrics.ts';

/** A room as the RoomService reports it; `createdAt` (ms) when it says when it was created. */
export interface ListedRoom {
  sid: string;
  name: string;
  createdAt?: number;
}

/**
 * What the bridge needs of LiveKit's RoomService (Twirp over HTTP), behind an interface so
 * the bridge is tested against the real client and a stand-in server
 * (test/helpers/livekit-twirp-standin.ts). Only the token path and the reconciler call
 * it; the webhook path never does (webhooks must be answered fast).
 */
export interface RoomProvider {
  /** Creates the room, or returns it when it exists (LiveKit's CreateRoom is idempotent). */
  createRoom(options: {
    name: string;
    emptyTimeoutS: number;
    maxParticipants: number;
    metadata: string;
  }): Promise<ListedRoom>;
  /** The rooms among `names` that exist now. `names` must not be empty (empty lists every room). */
  listRooms(names: readonly string[]): Promise<ListedRoom[]>;
  /** The room's participants, or undefined when the room does not exist (any more). */
  listParticipants(room: string): Promise<ParticipantInfo[] | undefined>;
}

export class LiveKitRoomService implements RoomProvider {
  readonly #client: RoomServiceClient;

  constructor(url: string, apiKey: string, apiSecret: string, options: { requestTimeoutS: number }) {
    this.#client = new RoomServiceClient(url, apiKey, apiSecret, {
      requestTimeout: options.requestTimeoutS,
    });
  }

  async createRoom(options: {
    name: string;
    emptyTimeoutS: number;
    maxParticipants: number;
    metadata: string;
  }): Promise<ListedRoom> {
    const room = await this.#client.createRoom({
      name: options.name,
      emptyTimeout: options.emptyTimeoutS,
      maxParticipants: options.maxParticipants,
      metadata: options.metadata,
    });
    return listed(room);
  }

  async listRooms(names: readonly string[]): Promise<ListedRoom[]> {
    if (names.length === 0) throw new RangeError('listRooms: no names (that would list every room)');
    const rooms = await this.#client.listRooms([...names]);
    return rooms.map(listed);
  }

  async listParticipants(room: string): Promise<ParticipantInfo[] | undefined> {
    try {
      return await this.#client.listParticipants(room);
    } catch (err) {
      if (err instanceof TwirpError && (err.code === 'not_found' || err.status === 404)) return undefined;
      throw err;
    }
  }

  /**
   * Deletes the room: everyone in it is disconnected and LiveKit sends `room_finished`.
   * The gateway never calls it (rooms close on LiveKit's empty timeout); e2e/livekit.ts does.
   */
  async deleteRoom(room: string): Promise<void> {
    await this.#client.deleteRoom(room);
  }
}

/** `rooms`, with every call that fails counted in `lifeos_livekit_room_service_errors_total{op}`. */
export function countingRoomErrors(rooms: RoomProvider, metrics: Metrics): RoomProvider {
  const counted = async <T>(op: LiveKitRoomServiceOp, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      metrics.livekitRoomServiceErrors.inc({ op });
      throw err;
    }
  };
  return {
    createRoom: (options) => counted('createRoom', () => rooms.createRoom(options)),
    listRooms: (names) => counted('listRooms', () => rooms.listRooms(names)),
    listParticipants: (room) => counted('listParticipants', () => rooms.listParticipants(room)),
  };
}

function listed(room: Room): ListedRoom {
  const createdAt = roomCreatedAt(room);
  return { sid: room.sid, name: room.name, ...(createdAt > 0 ? { createdAt } : {}) };
}

/** When a room instance was created, in ms (creationTimeMs, else creationTime in seconds); 0 if unset. */
export function roomCreatedAt(room: Pick<Room, 'creationTime' | 'creationTimeMs'>): number {
  const ms = Number(room.creationTimeMs);
  if (ms > 0) return ms;
  const seconds = Number(room.creationTime);
  return seconds > 0 ? seconds * 1000 : 0;
}

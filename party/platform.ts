/**
 * What a platform adapter (worker.ts for PartyServer, server.ts for PartyKit) gives a reflector: its sockets, what
 * each socket carries while the room sleeps, and the storage, clock, tokens and checks the room runs on.
 */
import type { RoomStorage } from "./room-store.js";
import type { ReflectorSettings } from "./settings.js";

/**
 * Anything the reflector can send a text frame to: a PartyServer or PartyKit connection, or a plain object in tests.
 * `state` is what the socket carries while the room sleeps (a hibernatable WebSocket's attachment); the reflector
 * keeps a `SocketState` there.
 */
export interface ClientSocket {
  send(text: string): void;
  close(code?: number, reason?: string): void;
  readonly state: unknown;
  setState(state: SocketState): unknown;
}

/**
 * What a socket carries across a sleep of the room: when it opened, the challenge its hello must answer, and the
 * client it said hello as.
 */
export interface SocketState {
  opened: number;
  nonce: string;
  client?: string;
}

export const isSocketState = (state: unknown): state is SocketState =>
  typeof state === "object" &&
  state !== null &&
  typeof (state as SocketState).opened === "number" &&
  typeof (state as SocketState).nonce === "string" &&
  ["undefined", "string"].includes(typeof (state as SocketState).client);

export function closeSocket(socket: ClientSocket, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // already closing
  }
}

/** The settings and what the reflector is given by its platform. Settings left out take their defaults. */
export interface ReflectorOptions<Socket> extends Partial<ReflectorSettings> {
  storage: RoomStorage;
  /** The server's clock, in milliseconds since the epoch. */
  clock: () => number;
  /** Makes a fresh, unguessable token: client ids, resume secrets and challenges. */
  newToken: () => string;
  /**
   * Whether a hello's `key` and `proof` prove that its sender holds the room's key: the signature of the connection's
   * challenge `nonce` (see `verifyMember` in crypto.ts). May answer at once or later; frames that arrive on the
   * socket meanwhile wait, in order.
   */
  verifyHello: (nonce: string, key: string, proof: string) => boolean | Promise<boolean>;
  /** SHA-256 of a text in hex (`sha256Hex` in crypto.ts): an uploaded snapshot must hash to what the members voted. */
  digest: (text: string) => string | Promise<string>;
  /** Runs `callback` in `ms` milliseconds: the window in which events are sent together. Without it, none waits. */
  setTimer?: (ms: number, callback: () => void) => void;
  /** Called after the reflector changed something outside a call (a check answered, a batch went out): re-arm the alarm. */
  changed?: () => void;
  /** Sockets still open from before the room slept, each with its `state`: the room takes them back as they were. */
  sockets?: Iterable<Socket>;
  /** When the platform last answered this socket's heartbeat on the room's behalf (Cloudflare does, asleep or not). */
  heartbeatAt?: (socket: Socket) => number | undefined;
}

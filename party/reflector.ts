import { EventLog, type LogStorage } from "./event-log.js";
import { encodeError, encodeTick, encodeWelcome, parseClientFrame, ProtocolError, type ReflectedEvent } from "./protocol.js";

/** Anything the reflector can send a text frame to: a PartyKit connection, or a plain object in tests. */
export interface ClientSocket {
  send(text: string): void;
}

export interface ReflectorOptions {
  /** The room id; one room is one session. */
  room: string;
  storage: LogStorage;
  /** Milliseconds of silence after which the reflector sends a tick. */
  tickInterval: number;
  /** The server's clock, in milliseconds since the epoch. */
  clock: () => number;
  /** Makes a fresh, unguessable client id. */
  newClientId: () => string;
}

export const DEFAULT_TICK_INTERVAL = 1000;

/** Clients present after replaying `events`, in the order they entered. */
export function presentClients(events: Iterable<ReflectedEvent>): string[] {
  const present = new Set<string>();
  for (const event of events) {
    if (event.type === "user-enter") present.add(event.client);
    else if (event.type === "user-exit") present.delete(event.client);
  }
  return [...present];
}

/** Replicated time never runs backwards, even when the server's clock is adjusted. */
export const stampTime = (clock: number, lastTime: number) => Math.max(clock, lastTime);

/**
 * One room's reflector: gives every event the next sequence number and the server's time, stores it and sends it
 * to every client, the sender included. It decides client ids and emits `user-enter` / `user-exit` into the same
 * order. Payloads pass through as opaque strings.
 *
 * Everything here is synchronous: a sequence number is assigned the moment a frame arrives.
 */
export class Reflector<Socket extends ClientSocket> {
  /** Connected sockets and the client id the reflector gave each. Keyed by socket, never by the client-chosen `_pk`. */
  private readonly clients = new Map<Socket, string>();
  private time: number;
  private lastSentAt: number;

  private constructor(
    private readonly options: ReflectorOptions,
    private readonly log: EventLog,
  ) {
    this.time = log.lastTime;
    this.lastSentAt = options.clock();
  }

  /**
   * Loads the room's log. Clients the log still lists as present were connected to an earlier run of the server
   * and are gone now, so each gets its `user-exit` before anyone new is welcomed.
   */
  static async open<Socket extends ClientSocket>(options: ReflectorOptions): Promise<Reflector<Socket>> {
    const reflector = new Reflector<Socket>(options, await EventLog.load(options.storage));
    for (const client of presentClients(reflector.log.replay())) reflector.record({ type: "user-exit", client });
    return reflector;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Welcomes a new socket: its id and the whole log, ending with its own `user-enter`, which everyone else also gets. */
  connect(socket: Socket): string {
    const present = new Set(this.clients.values());
    let client = this.options.newClientId();
    while (present.has(client)) client = this.options.newClientId();
    const enter = this.record({ type: "user-enter", client });
    // A socket that is already closing still becomes a client here, so its close records the matching user-exit.
    trySend(socket, encodeWelcome({ room: this.options.room, client, time: this.time }, this.log.encoded));
    this.broadcast(enter);
    this.clients.set(socket, client);
    return client;
  }

  /** Handles one frame from a connected socket. A bad frame gets an error frame back and changes nothing. */
  receive(socket: Socket, data: string | ArrayBuffer | ArrayBufferView): void {
    const client = this.clients.get(socket);
    if (client === undefined) return;
    let frame;
    try {
      frame = parseClientFrame(data);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      trySend(socket, encodeError(error.code, error.message));
      return;
    }
    this.broadcast(this.record({ type: "message", client, payload: frame.payload }));
  }

  /** A socket closed or failed: its client leaves the room. Closing an unknown socket twice is harmless. */
  disconnect(socket: Socket): void {
    const client = this.clients.get(socket);
    if (client === undefined) return;
    this.clients.delete(socket);
    this.broadcast(this.record({ type: "user-exit", client }));
  }

  /** Milliseconds until a tick is due, or undefined while nobody is there to receive one. */
  nextTickIn(): number | undefined {
    if (this.clients.size === 0) return undefined;
    return Math.max(0, this.lastSentAt + this.options.tickInterval - this.options.clock());
  }

  /** Sends a tick if the room has been quiet for a tick interval. Ticks advance time but are not stored. */
  tick(): boolean {
    const now = this.options.clock();
    if (this.clients.size === 0 || now - this.lastSentAt < this.options.tickInterval) return false;
    this.time = stampTime(now, this.time);
    this.broadcast(encodeTick(this.time));
    return true;
  }

  /** Stamps, stores and returns the encoded event. */
  private record(event: { type: "message"; client: string; payload: string } | { type: "user-enter" | "user-exit"; client: string }): string {
    this.time = stampTime(this.options.clock(), this.time);
    const { type, client } = event;
    const stamped = { type, seq: this.log.lastSeq + 1, time: this.time, client };
    return this.log.append((event.type === "message" ? { ...stamped, payload: event.payload } : stamped) as ReflectedEvent);
  }

  /** Our own loop: one closing socket must not stop the others from receiving (PartyKit's broadcast throws halfway). */
  private broadcast(text: string): void {
    this.lastSentAt = this.options.clock();
    for (const socket of this.clients.keys()) trySend(socket, text);
  }
}

function trySend(socket: ClientSocket, text: string): void {
  try {
    socket.send(text);
  } catch {
    // The socket is closing; its close handler removes it.
  }
}

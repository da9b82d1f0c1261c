/**
 * How a socket becomes a client of the room: its challenge, the hello that answers it with proof of the room's key,
 * and the welcome, as the same client again (a resume) or as a newcomer while the room has room for one. The welcome
 * brings the client up to date: the snapshot when it needs one, then every event after its starting point.
 */
import {
  CLOSE_BUSY,
  CLOSE_NO_HELLO,
  CLOSE_NOT_MEMBER,
  CLOSE_REPLACED,
  CLOSE_ROOM_FULL,
  encodeChallenge,
  encodeError,
  encodeSnapshotPart,
  encodeWelcome,
  type ClientFrame,
} from "../common/protocol.js";
import { TokenBucket } from "../common/token-bucket.js";
import type { Client, Connection } from "./client.js";
import type { Connections } from "./connections.js";
import { newAccount, trySend, type Delivery } from "./delivery.js";
import { closeSocket, isSocketState, type ClientSocket, type ReflectorOptions, type SocketState } from "./platform.js";
import type { RoomStore } from "./room-store.js";
import type { Roster } from "./roster.js";
import type { ReflectorSettings } from "./settings.js";

type Hello = Extract<ClientFrame, { type: "hello" }>;

/** What admission needs of its room. */
export interface AdmissionHost<Socket> {
  /** The room's store now: deleting the room replaces it. */
  store(): RoomStore;
  /** The room's replicated time, which a welcome tells. */
  time(): number;
  /** Whether the log is full: the room takes no newcomer until a snapshot. */
  logFull(): boolean;
  /** Handles a frame that waited for its socket's hello to be checked. */
  receive(socket: Socket, data: string | ArrayBuffer | ArrayBufferView): void;
  /** Stamps and stores a newcomer's `user-enter`, with its hello's profile; returns it encoded, for admission to send. */
  enter(client: string, profile: string | undefined): string;
  /** A newcomer's entry went out: a snapshot round may fall due after it. */
  joined(): void;
}

type AdmissionSettings = Pick<
  ReflectorSettings,
  "maxWaiting" | "helloTimeout" | "maxClients" | "joinRate" | "joinBurst" | "heartbeat" | "rateLimit" | "rateBurst" | "writeInterval"
>;

export class Admission<Socket extends ClientSocket> {
  /**
   * The connections that have not said hello yet, by socket, earliest first. The room hears exactly these and the
   * present ones, so a connection missing here when its check answers was closed meanwhile.
   */
  private readonly waiting = new Map<Socket, Connection<Socket>>();
  /** Newcomers the room admits: the churn of joining and leaving gives nobody more than one client's share. */
  private readonly joins: TokenBucket;

  constructor(
    private readonly host: AdmissionHost<Socket>,
    private readonly options: Pick<ReflectorOptions<Socket>, "clock" | "newToken" | "verifyHello" | "changed">,
    private readonly settings: AdmissionSettings,
    private readonly roster: Roster<Socket>,
    private readonly connections: Connections<Socket>,
    private readonly delivery: Delivery<Socket>,
    /** The last event in storage when this run of the room started. */
    private readonly loadedSeq: number,
    now: number,
  ) {
    this.joins = new TokenBucket(settings.joinRate, settings.joinBurst, now);
  }

  /**
   * A socket opened: it gets its challenge, and becomes a client when its hello answers it. So that sockets that never
   * join cannot pile up, a room holds at most `maxWaiting` sockets waiting for their hello; more are turned away.
   */
  connect(socket: Socket): void {
    if (this.waiting.size >= this.settings.maxWaiting) {
      trySend(socket, encodeError("busy", `${this.settings.maxWaiting} connections to this room are waiting to say hello; try again in a moment`));
      return closeSocket(socket, CLOSE_BUSY, "too many connections waiting");
    }
    const now = this.options.clock();
    const nonce = this.options.newToken();
    this.waiting.set(socket, this.connections.add(socket, now, nonce, now));
    socket.setState({ opened: now, nonce } satisfies SocketState);
    trySend(socket, encodeChallenge(nonce));
  }

  /** Takes back the sockets that stayed open while the room slept, in the order they opened. */
  takeBack(sockets: Iterable<Socket>, now: number): void {
    const states = [...sockets].map((socket) => ({ socket, state: socket.state }));
    states.sort((a, b) => (isSocketState(a.state) ? a.state.opened : 0) - (isSocketState(b.state) ? b.state.opened : 0));
    for (const { socket, state } of states) this.takeBackOne(socket, state, now);
  }

  /** A socket that stayed open while the room slept: present again as the client it said hello as, or still waiting. */
  private takeBackOne(socket: Socket, state: unknown, now: number): void {
    const client = isSocketState(state) && state.client !== undefined ? this.roster.get(state.client) : undefined;
    if (!isSocketState(state) || (state.client !== undefined && (client === undefined || client.connection !== undefined))) {
      // Nothing the room knows: the client resumes on a new socket and the room sorts out who it is.
      return closeSocket(socket, CLOSE_REPLACED, "the room does not know this connection");
    }
    const connection = this.connections.add(socket, state.opened, state.nonce, now);
    if (client === undefined) {
      this.waiting.set(socket, connection);
      return;
    }
    // Its account restarts: what was sent before the sleep counts as read, and its frames count as sent when handled.
    client.earlierRun = false;
    client.awayUntil = undefined;
    this.attach(client, connection);
  }

  /** When the first socket waiting for its hello times out; Infinity when none waits. */
  get helloDeadline(): number {
    if (this.waiting.size === 0) return Infinity;
    // Insertion order is opening order, so the first socket waiting for its hello is the first to time out.
    return this.waiting.values().next().value!.opened + this.settings.helloTimeout;
  }

  /** Closes the sockets that have not said hello within `helloTimeout`. */
  expire(now: number): void {
    for (const connection of this.waiting.values()) {
      if (connection.opened + this.settings.helloTimeout > now) break;
      this.connections.forget(connection, CLOSE_NO_HELLO, "no hello");
    }
  }

  /** The room no longer hears `socket`: no hello is awaited from it. */
  stopWaiting(socket: Socket): void {
    this.waiting.delete(socket);
  }

  /**
   * A hello must prove that its sender holds the room's key before it gets a seat. A check that answers later holds
   * the socket's next frames back until it does; they are then handled in the order they came.
   */
  hello(connection: Connection<Socket>, hello: Hello): void {
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = this.options.verifyHello(connection.nonce, hello.key, hello.proof);
    } catch {
      verdict = false;
    }
    if (typeof verdict === "boolean") return this.admit(connection, hello, verdict);
    connection.held = [];
    verdict
      .catch(() => false)
      .then((member) => {
        if (this.waiting.get(connection.socket) !== connection) return;
        const held = connection.held!;
        connection.held = undefined;
        this.admit(connection, hello, member);
        for (const data of held) this.host.receive(connection.socket, data);
        this.options.changed?.();
      })
      .catch((error: unknown) => console.error("reflector: admitting a member after its hello failed", error));
  }

  private admit(connection: Connection<Socket>, hello: Hello, member: boolean): void {
    if (member) return this.welcome(connection, hello);
    this.connections.refuse(connection, "not-member", "this hello does not prove that it holds the room's key: ask for the link again");
    this.connections.forget(connection, CLOSE_NOT_MEMBER, "not a member");
  }

  private welcome(connection: Connection<Socket>, hello: Hello): void {
    let acked = 0;
    if (hello.resume !== undefined) {
      const { client: id, secret, seq } = hello.resume;
      const known = this.roster.resumable(id, secret);
      // Someone else's id: no welcome, and nothing changes for that client. The socket may say hello again.
      if (known === "taken") return this.connections.refuse(connection, "identity", `client ${id} belongs to another connection`);
      if (known !== undefined) return this.resume(connection, known, seq);
      acked = this.roster.retiredLastPost(id, secret);
    }
    const now = this.options.clock();
    const full =
      this.roster.size >= this.settings.maxClients
        ? {
            code: "room-full" as const,
            message: `this room holds ${this.settings.maxClients} clients, present or away; try again later`,
            close: CLOSE_ROOM_FULL,
            reason: "room full",
          }
        : this.host.logFull()
          ? {
              code: "log-full" as const,
              message: "this room's history is full until its members store a snapshot; try again later",
              close: CLOSE_BUSY,
              reason: "log full",
            }
          : !this.joins.take(now)
            ? {
                code: "busy" as const,
                message: "many newcomers joined this room just now; try again in a moment",
                close: CLOSE_BUSY,
                reason: "too many newcomers",
              }
            : undefined;
    if (full !== undefined) {
      this.connections.refuse(connection, full.code, full.message);
      return this.connections.forget(connection, full.close, full.reason);
    }
    const client = this.roster.join(now);
    // The enter goes in the log before the client's record: a record must never outlive its enter in a crash.
    const enter = this.host.enter(client.id, hello.profile);
    this.roster.remember(client);
    this.roster.retell();
    this.sendWelcome(connection, client, false, acked, 0);
    // To the others, now: the newcomer has it in its welcome, and would get it twice from a later batch.
    this.delivery.broadcast(enter);
    this.delivery.flush();
    this.attach(client, connection);
    this.host.joined();
  }

  /** The same client on a new socket: no exit and no enter, only the events it missed. */
  private resume(connection: Connection<Socket>, client: Client<Socket>, seq: number): void {
    if (client.connection !== undefined) {
      // The old socket has not noticed that it is dead; the client knows better.
      this.connections.forget(client.connection, CLOSE_REPLACED, "this client resumed on a newer connection");
    } else {
      this.roster.remember(client);
    }
    client.awayUntil = undefined;
    // Events past the stored log that a client saw before a restart may have been lost and their numbers reused
    // since for other events: such a client starts again from the room's state, not from its own.
    const held = client.earlierRun === true && seq > this.loadedSeq ? 0 : seq;
    client.earlierRun = false;
    this.sendWelcome(connection, client, true, client.lastPost, held);
    this.attach(client, connection);
  }

  private attach(client: Client<Socket>, connection: Connection<Socket>): void {
    this.waiting.delete(connection.socket);
    client.connection = connection;
    connection.client = client;
    this.connections.present(connection);
    connection.socket.setState({ opened: connection.opened, nonce: connection.nonce, client: client.id } satisfies SocketState);
  }

  /**
   * The welcome, then the snapshot parts when the client needs them, then every event after its starting point.
   * A client that already holds events from `seq` on (and the log still has them) gets only what follows. Whatever
   * waits to go out in a batch goes first: the welcome must follow every event it leaves out.
   */
  private sendWelcome(connection: Connection<Socket>, client: Client<Socket>, resumed: boolean, acked: number, seq: number): void {
    this.delivery.flush();
    const store = this.host.store();
    const fromHeld = seq > 0 && seq >= store.snapshotSeq && seq <= store.lastSeq;
    const snapshot = fromHeld ? undefined : store.snapshot;
    const from = fromHeld ? seq : store.snapshotSeq;
    const { rateLimit, rateBurst, writeInterval } = this.settings;
    const limited = Number.isFinite(rateLimit) && Number.isFinite(rateBurst);
    const budget = this.roster.budget;
    const frames = [
      encodeWelcome({
        client: client.id,
        secret: client.secret,
        resumed,
        acked,
        time: this.host.time(),
        heartbeat: this.settings.heartbeat,
        rate: limited ? { perSecond: rateLimit, burst: rateBurst } : null,
        budget: Number.isFinite(budget.perSecond) ? budget : null,
        writeInterval,
        snapshot: snapshot === undefined ? null : { seq: snapshot.seq, parts: snapshot.parts.length, hash: snapshot.hash },
        from,
        last: store.lastSeq,
      }),
      ...(snapshot?.parts.map((data, part) => encodeSnapshotPart(snapshot.seq, part, snapshot.parts.length, data)) ?? []),
      ...store.eventsAfter(from),
    ];
    Object.assign(connection, newAccount(), { welcomeLength: frames.reduce((sum, frame) => sum + frame.length, 0) });
    connection.clock.welcomed(this.options.clock());
    for (const frame of frames) this.connections.send(connection, frame);
  }
}

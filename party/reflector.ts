import {
  CLOSE_BUSY,
  CLOSE_FLOODING,
  CLOSE_NO_HELLO,
  CLOSE_NOT_MEMBER,
  CLOSE_REPLACED,
  CLOSE_ROOM_FULL,
  CLOSE_SILENT,
  encodeChallenge,
  encodeDivergence,
  encodeError,
  encodeSnapshotNotice,
  encodeSnapshotPart,
  encodeTick,
  encodeWelcome,
  majority,
  MAX_FRAME_LENGTH,
  parseClientFrame,
  PONG,
  ProtocolError,
  type ClientFrame,
  type ErrorCode,
  type ReflectedEvent,
  type SnapshotPart,
  type Vote,
} from "./protocol.js";
import { RoomStore, type RetiredClient, type RoomRecord, type RoomStorage } from "./room-store.js";
import { DEFAULT_SETTINGS, type ReflectorSettings } from "./settings.js";
import { TokenBucket } from "./token-bucket.js";

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
  /** Called after the reflector changed something outside a call (a hello or a snapshot was checked): re-arm the alarm. */
  changed?: () => void;
  /** Sockets still open from before the room slept, each with its `state`: the room takes them back as they were. */
  sockets?: Iterable<Socket>;
  /** When the platform last answered this socket's heartbeat on the room's behalf (Cloudflare does, asleep or not). */
  heartbeatAt?: (socket: Socket) => number | undefined;
}

/** How long, and for how many clients, the reflector remembers a client after its grace period ended. */
const RETIRED_MEMORY = 60 * 60 * 1000;
const MAX_RETIRED = 1000;

/** One client of the room: present with a socket, or away within its grace period. */
interface Client<Socket> {
  id: string;
  secret: string;
  /** Highest post id sequenced for this client: a post with an id not above it is a resend. */
  lastPost: number;
  socket: Socket | undefined;
  /** While the socket is gone: when the grace period ends. */
  awayUntil: number | undefined;
  /**
   * Set for a client the room loaded from storage without a socket: it saw the previous run of the room, whose last
   * events may not have been written before it stopped. Cleared by its first welcome in this run.
   */
  earlierRun?: boolean;
}

/**
 * One open socket: the client it said hello as (none yet), the challenge its hello answers, its rate limit, and when
 * it was last heard from. While its hello is being checked, what else it sends waits in `held`.
 */
interface Connection<Socket> {
  client: Client<Socket> | undefined;
  nonce: string;
  limiter: RateLimiter;
  opened: number;
  lastHeard: number;
  held?: (string | ArrayBuffer | ArrayBufferView)[];
}

/** A snapshot point in progress: first the hashes, then one upload from a client of the majority. */
interface SnapshotRound {
  seq: number;
  /** Clients expected to report a hash, in the order they joined. */
  voters: string[];
  hashes: Map<string, string>;
  deadline: number;
  /** Set once the hashes are counted: clients holding the majority's state, in the order they will be asked... */
  candidates?: string[];
  /** ...and the hash they voted, which the upload must have. */
  hash?: string;
  uploader?: string;
  parts?: (string | undefined)[];
  /** True while a complete upload's hash is being checked. */
  checking?: boolean;
}

/**
 * A connection's allowance: a token bucket that holds up to `burst` tokens and refills at `rate` per second, and
 * the times of its recent rate-limited refusals, to tell a burst from a flood.
 */
export class RateLimiter {
  private readonly bucket: TokenBucket;
  /** Times of the latest `floodRefusals + 1` refusals, oldest first. */
  private readonly refusals: number[] = [];

  constructor(
    private readonly limits: Pick<ReflectorSettings, "rateLimit" | "rateBurst" | "floodRefusals">,
    now: number,
  ) {
    this.bucket = new TokenBucket(limits.rateLimit, limits.rateBurst, now);
  }

  /** Takes a token for a frame arriving at `now`: false when the bucket is empty and the frame must be refused. */
  take(now: number): boolean {
    return this.bucket.take(now);
  }

  /** Records a refusal at `now`; true when there have been more than `floodRefusals` within one refill window. */
  refused(now: number): boolean {
    const { rateLimit, rateBurst, floodRefusals } = this.limits;
    this.refusals.push(now);
    if (this.refusals.length <= floodRefusals) return false;
    while (this.refusals.length > floodRefusals + 1) this.refusals.shift();
    const window = (rateBurst / rateLimit) * 1000;
    return now - this.refusals[0]! < window;
  }
}

/** Replicated time never runs backwards, even when the server's clock is adjusted. */
export const stampTime = (clock: number, lastTime: number) => Math.max(clock, lastTime);

/** Groups the hashes reported at a snapshot point, the most common first. */
export function countVotes(hashes: Map<string, string>): Vote[] {
  const byHash = new Map<string, string[]>();
  for (const [client, hash] of hashes) byHash.set(hash, [...(byHash.get(hash) ?? []), client]);
  return [...byHash].map(([hash, clients]) => ({ hash, clients })).sort((a, b) => b.clients.length - a.clients.length);
}

/** Compares secrets in time independent of where they differ. */
function sameSecret(a: string, b: string): boolean {
  let difference = a.length ^ b.length;
  for (let index = 0; index < Math.max(a.length, b.length); index++) difference |= (a.charCodeAt(index) | 0) ^ (b.charCodeAt(index) | 0);
  return difference === 0;
}

const isSocketState = (state: unknown): state is SocketState =>
  typeof state === "object" &&
  state !== null &&
  typeof (state as SocketState).opened === "number" &&
  typeof (state as SocketState).nonce === "string" &&
  ["undefined", "string"].includes(typeof (state as SocketState).client);

/**
 * One room's reflector: gives every event the next sequence number and the server's time, stores it and sends it
 * to every client, the sender included. It decides client ids, emits `user-enter` / `user-exit` into the same
 * order, keeps clients through short disconnections, and collects snapshots. Payloads and snapshots pass through
 * as opaque strings.
 *
 * Everything here is synchronous: a sequence number is assigned the moment a frame arrives. Nothing runs on a
 * timer: the platform calls `wake` at `nextWakeAt`, and a room with nothing due needs no JavaScript at all. So
 * that a room may sleep between any two calls, everything it must not forget is in storage (written within
 * `writeInterval`) or in its sockets' `state`, and `open` rebuilds the room from both.
 */
export class Reflector<Socket extends ClientSocket> {
  /** Every open socket. Keyed by socket, never by the client-chosen `_pk`. */
  private readonly connections = new Map<Socket, Connection<Socket>>();
  /**
   * The sockets that have said hello, whom every broadcast goes to. An array rather than a pass over `connections`:
   * in workerd a map's iterator allocates a result object per entry, i.e. per delivery, and that garbage alone
   * made the room collect more often than the baseline room (docs/performance.md, item 10).
   */
  private readonly present: Socket[] = [];
  /** When each socket that has not said hello yet opened, earliest first. */
  private readonly waiting = new Map<Socket, number>();
  private readonly settings: ReflectorSettings;
  /** Present and away clients by id, in the order they joined. */
  private readonly clients = new Map<string, Client<Socket>>();
  private store: RoomStore;
  private time: number;
  private lastDueSeq: number;
  private lastDueAt: number;
  /** When the last snapshot round started in this run of the room: the gap applies between rounds only. */
  private lastRoundAt = -Infinity;
  /** The last event in storage when this run of the room started. */
  private readonly loadedSeq: number;
  /** When what waits for storage must be written. */
  private writeDueAt = Infinity;
  /** Whether the room record (see `saveRoom`) changed since it was written. */
  private roomChanged = false;
  private round: SnapshotRound | undefined;
  /** The earliest time the replicas asked to be ticked at: a model has work due then. */
  private tickAt: number | undefined;
  /** When to look for sockets that have gone silent; Infinity while nobody is present. */
  private silenceCheckAt = Infinity;

  private constructor(
    private readonly options: ReflectorOptions<Socket>,
    store: RoomStore,
  ) {
    const settings = { ...DEFAULT_SETTINGS, ...definedOnly(options) };
    settings.maxFrameLength = Math.min(settings.maxFrameLength, MAX_FRAME_LENGTH);
    this.settings = settings;
    this.store = store;
    const now = options.clock();
    const room = store.room;
    this.time = Math.max(store.lastTime, room?.time ?? 0);
    this.tickAt = room?.tickAt;
    this.lastDueSeq = room?.lastDueSeq ?? store.lastSeq;
    this.lastDueAt = room?.lastDueAt ?? now;
    this.loadedSeq = store.lastSeq;
    const stored = room?.round;
    if (stored !== undefined) this.round = { ...stored, hashes: new Map(stored.hashes) };
  }

  /**
   * Loads the room and takes back the sockets that stayed open while it slept. Clients it counts as present but
   * whose socket is gone (the server restarted) each get a grace period from now to come back as themselves, as
   * after any dropped socket; clients that were away stay away until their grace period ends.
   */
  static async open<Socket extends ClientSocket>(options: ReflectorOptions<Socket>): Promise<Reflector<Socket>> {
    const store = await RoomStore.load(options.storage);
    const reflector = new Reflector<Socket>(options, store);
    const lastPosts = new Map(Object.entries(store.snapshot?.lastPosts ?? {}));
    for (const event of store.replay()) if (event.type === "message") lastPosts.set(event.client, event.id);
    const now = options.clock();
    for (const [id, { secret, awayUntil }] of store.clients) {
      reflector.clients.set(id, { id, secret, lastPost: lastPosts.get(id) ?? 0, socket: undefined, awayUntil: awayUntil ?? now + reflector.settings.grace, earlierRun: true });
    }
    const sockets = [...(options.sockets ?? [])].map((socket) => ({ socket, state: socket.state }));
    sockets.sort((a, b) => (isSocketState(a.state) ? a.state.opened : 0) - (isSocketState(b.state) ? b.state.opened : 0));
    for (const { socket, state } of sockets) reflector.takeBack(socket, state, now);
    return reflector;
  }

  /** A socket that stayed open while the room slept: present again as the client it said hello as, or still waiting. */
  private takeBack(socket: Socket, state: unknown, now: number): void {
    const client = isSocketState(state) && state.client !== undefined ? this.clients.get(state.client) : undefined;
    if (!isSocketState(state) || (state.client !== undefined && (client === undefined || client.socket !== undefined))) {
      // Nothing the room knows: the client resumes on a new socket and the room sorts out who it is.
      return closeSocket(socket, CLOSE_REPLACED, "the room does not know this connection");
    }
    this.connections.set(socket, { client: undefined, nonce: state.nonce, limiter: new RateLimiter(this.settings, now), opened: state.opened, lastHeard: now });
    if (client === undefined) {
      this.waiting.set(socket, state.opened);
      return;
    }
    client.earlierRun = false;
    client.awayUntil = undefined;
    this.attach(client, socket);
  }

  /** Sockets that have said hello, i.e. clients that are present now. */
  get clientCount(): number {
    return this.present.length;
  }

  /** Whether some client is within its grace period: every client is either present or away. */
  private get anyAway(): boolean {
    return this.clients.size > this.present.length;
  }

  /** True when no client is present or within its grace period: the room is idle. */
  get isEmpty(): boolean {
    return this.clients.size === 0;
  }

  /** Time of the room's last event; undefined while the room has no history. */
  get lastActivity(): number | undefined {
    return this.store.lastSeq === 0 ? undefined : this.store.lastTime;
  }

  private get retired(): ReadonlyMap<string, RetiredClient> {
    return this.store.retired;
  }

  /**
   * A socket opened: it gets its challenge, and becomes a client when its hello answers it. So that sockets that never
   * join cannot pile up, a room holds at most `maxWaiting` sockets waiting for their hello; more are turned away.
   */
  connect(socket: Socket): void {
    if (this.waiting.size >= this.settings.maxWaiting) {
      refuse(socket, "busy", `${this.settings.maxWaiting} connections to this room are waiting to say hello; try again in a moment`);
      return closeSocket(socket, CLOSE_BUSY, "too many connections waiting");
    }
    const now = this.options.clock();
    const nonce = this.options.newToken();
    this.connections.set(socket, { client: undefined, nonce, limiter: new RateLimiter(this.settings, now), opened: now, lastHeard: now });
    this.waiting.set(socket, now);
    socket.setState({ opened: now, nonce } satisfies SocketState);
    trySend(socket, encodeChallenge(nonce));
  }

  /**
   * Handles one frame from a socket. A bad frame gets one error frame back and changes nothing; so does a frame
   * over the connection's rate limit, and a connection that keeps sending over it is closed as flooding.
   */
  receive(socket: Socket, data: string | ArrayBuffer | ArrayBufferView): void {
    const connection = this.connections.get(socket);
    if (connection === undefined) return;
    const now = this.options.clock();
    connection.lastHeard = now;
    if (connection.held !== undefined) {
      // Its hello is being checked: what follows waits, in order, up to a burst's worth.
      if (connection.held.length < this.settings.rateBurst) connection.held.push(data);
      else this.rateLimited(socket, connection);
      return;
    }
    const client = connection.client;
    const uploading = client !== undefined && this.round?.uploader === client.id;
    let frame: ClientFrame | undefined;
    let problem: ProtocolError | undefined;
    try {
      // Only the client asked for a snapshot may send frames up to the hard maximum: its parts are that large.
      frame = parseClientFrame(data, uploading ? MAX_FRAME_LENGTH : this.settings.maxFrameLength);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      problem = error;
    }
    const requested = frame?.type === "snapshot" && uploading && frame.seq === this.round!.seq;
    const limit = this.settings.maxFrameLength;
    if (uploading && !requested && typeof data === "string" && data.length > limit) {
      problem = new ProtocolError("frame-too-large", `frame is ${data.length} characters; the limit is ${limit}`);
    }
    // The parts of a snapshot the reflector asked for are never throttled, however many there are.
    if (!requested && !connection.limiter.take(now)) return this.rateLimited(socket, connection);
    if (problem !== undefined) return refuse(socket, problem.code, problem.message);
    if (frame!.client !== undefined && frame!.client !== client?.id) {
      return refuse(socket, "identity", `client ${frame!.client} belongs to another connection; the reflector knows who sent this frame`);
    }
    this.handle(socket, client, frame!);
  }

  private handle(socket: Socket, client: Client<Socket> | undefined, frame: ClientFrame): void {
    // A heartbeat is answered whoever sends it, as the platform answers it when it does so for the room.
    if (frame.type === "ping") return trySend(socket, PONG);
    if (client === undefined) {
      if (frame.type === "hello") this.checkMember(socket, frame);
      else refuse(socket, "out-of-turn", `send hello before ${frame.type}`);
      return;
    }
    switch (frame.type) {
      case "hello":
        return refuse(socket, "out-of-turn", "this connection has already said hello");
      case "publish":
        return this.post(client, frame.id, frame.payload);
      case "hash":
        return this.vote(client, frame.seq, frame.hash);
      case "snapshot":
        return this.upload(client, frame);
      case "tick-request":
        return this.requestTick(frame.time);
      case "leave":
        // A deliberate goodbye needs no grace period.
        this.forget(socket);
        return this.leaveNow(client, this.options.clock());
    }
  }

  /** A socket closed or failed: its client is away until it resumes or its grace period ends. */
  disconnect(socket: Socket): void {
    const client = this.connections.get(socket)?.client;
    this.forget(socket);
    if (client === undefined || client.socket !== socket) return;
    this.goAway(client, this.options.clock());
  }

  /**
   * When `wake` next has something to do, in the clock's milliseconds, or undefined when nothing is pending: the
   * earliest of the storage flush, hello timeouts, grace periods, the snapshot round, a requested tick, the silence
   * check and, for an empty room, retention. The adapter asks after every frame, so it builds nothing and walks the
   * clients only while some are away.
   */
  nextWakeAt(): number | undefined {
    let due = this.unwritten ? this.writeDueAt : Infinity;
    if (this.anyAway) for (const client of this.clients.values()) if (client.awayUntil !== undefined && client.awayUntil < due) due = client.awayUntil;
    if (this.round !== undefined && this.round.deadline < due) due = this.round.deadline;
    // Insertion order is opening order, so the first socket waiting for its hello is the first to time out.
    if (this.waiting.size > 0) due = Math.min(due, this.waiting.values().next().value! + this.settings.helloTimeout);
    if (this.present.length > 0) {
      if (this.tickAt !== undefined && this.tickAt < due) due = this.tickAt;
      if (this.silenceCheckAt < due) due = this.silenceCheckAt;
    }
    if (this.clients.size === 0 && this.store.lastSeq > 0) due = Math.min(due, this.store.lastTime + this.settings.retention);
    return due === Infinity ? undefined : due;
  }

  /**
   * Does what is due: writes what waits for storage, closes sockets that never said hello or went silent, ends grace
   * periods, gives up on a stalled snapshot, ticks the replicas that asked, and deletes a room idle past retention.
   */
  wake(): void {
    const now = this.options.clock();
    if (this.unwritten && this.writeDueAt <= now) this.flush();
    for (const [socket, opened] of this.waiting) {
      if (opened + this.settings.helloTimeout > now) break;
      this.forget(socket, CLOSE_NO_HELLO, "no hello");
    }
    if (this.silenceCheckAt <= now) this.dropSilent(now);
    if (this.anyAway) {
      for (const client of [...this.clients.values()]) {
        if (client.awayUntil !== undefined && client.awayUntil <= now) this.exit(client, now);
      }
    }
    for (const [id, { until }] of [...this.retired]) if (until <= now) this.store.forgetRetired(id);
    if (this.round !== undefined && this.round.deadline <= now) {
      if (this.round.candidates === undefined) this.countRound();
      else this.requestUpload(this.round.uploader);
    }
    if (this.tickAt !== undefined && this.tickAt <= now) this.tick(now);
    if (this.clients.size === 0 && this.store.lastSeq > 0 && now >= this.store.lastTime + this.settings.retention) this.deleteRoom();
  }

  /** Writes everything that waits for storage. */
  private flush(): void {
    this.store.flush(this.roomChanged ? this.roomRecord() : undefined);
    this.roomChanged = false;
    this.writeDueAt = Infinity;
  }

  /** Whether anything waits to be written: events, or a change of the room record. */
  private get unwritten(): boolean {
    return this.store.unwrittenEvents > 0 || this.roomChanged;
  }

  /**
   * Something is about to wait for storage: when nothing did, it is due within `writeInterval`, so that it is
   * stored before the room can sleep. (Storing a client record writes the waiting events early; that is harmless.)
   */
  private willStore(): void {
    if (!this.unwritten) this.writeDueAt = this.options.clock() + this.settings.writeInterval;
  }

  /** What the room must remember across a sleep besides its log and clients changed: write it with the next flush. */
  private saveRoom(): void {
    this.willStore();
    this.roomChanged = true;
    if (this.settings.writeInterval === 0) this.flush();
  }

  private roomRecord(): RoomRecord {
    const round = this.round;
    return {
      time: this.time,
      tickAt: this.tickAt,
      lastDueSeq: this.lastDueSeq,
      lastDueAt: this.lastDueAt,
      round:
        round === undefined
          ? undefined
          : {
              seq: round.seq,
              voters: round.voters,
              hashes: [...round.hashes],
              deadline: round.deadline,
              candidates: round.candidates,
              hash: round.hash,
              uploader: round.uploader,
            },
    };
  }

  /** A replica has model work due at `time`: tick then, unless an event carries time past it first. */
  private requestTick(time: number): void {
    if (time <= this.time || (this.tickAt !== undefined && this.tickAt <= time)) return;
    this.tickAt = time;
    this.saveRoom();
  }

  private tick(now: number): void {
    this.tickAt = undefined;
    // Nobody to tick: the replicas ask again when they come back.
    if (this.present.length > 0) {
      this.time = stampTime(now, this.time);
      this.broadcast(encodeTick(this.time));
    }
    this.saveRoom();
  }

  /**
   * Closes the sockets that have sent nothing, heartbeats included, for `silenceTimeout`: their peers are gone
   * without a word. Looks again when the quietest of the others could be silent that long.
   */
  private dropSilent(now: number): void {
    let quietest = Infinity;
    for (const socket of [...this.present]) {
      const connection = this.connections.get(socket)!;
      const heard = Math.max(connection.lastHeard, this.options.heartbeatAt?.(socket) ?? 0);
      if (now - heard >= this.settings.silenceTimeout) {
        const client = connection.client!;
        this.forget(socket, CLOSE_SILENT, "no heartbeat");
        this.goAway(client, now);
      } else {
        quietest = Math.min(quietest, heard);
      }
    }
    this.silenceCheckAt = quietest + this.settings.silenceTimeout;
  }

  private deleteRoom(): void {
    this.store.deleteAll();
    this.store = RoomStore.empty(this.options.storage);
    this.writeDueAt = Infinity;
    this.roomChanged = false;
    this.time = 0;
    this.tickAt = undefined;
    this.round = undefined;
    this.lastDueSeq = 0;
  }

  /** A frame over the rate limit is refused; a connection refused too often within one refill window is closed. */
  private rateLimited(socket: Socket, connection: Connection<Socket>): void {
    const { rateLimit, rateBurst } = this.settings;
    refuse(socket, "rate-limited", `more than ${rateBurst} frames at once or ${rateLimit} per second; this frame was dropped`);
    const now = this.options.clock();
    if (!connection.limiter.refused(now)) return;
    // A flooder loses its seat at once: no grace period, and the others see it leave.
    const client = connection.client;
    this.forget(socket, CLOSE_FLOODING, "flooding");
    if (client !== undefined) this.leaveNow(client, now);
  }

  /** Forgets a socket, closing it with `code` when one is given: its frames are ignored from now on. */
  private forget(socket: Socket, code?: number, reason?: string): void {
    if (this.connections.get(socket)?.client !== undefined) this.present.splice(this.present.indexOf(socket), 1);
    if (this.present.length === 0) this.silenceCheckAt = Infinity;
    this.connections.delete(socket);
    this.waiting.delete(socket);
    if (code !== undefined) closeSocket(socket, code, reason ?? "");
  }

  /** A client's socket is gone: it stays in the room, away, for the grace period. */
  private goAway(client: Client<Socket>, now: number): void {
    client.socket = undefined;
    client.awayUntil = now + this.settings.grace;
    this.store.rememberClient(client.id, { secret: client.secret, awayUntil: client.awayUntil });
    this.leaveRound(client.id);
  }

  /** A client leaves at once, without a grace period: it said goodbye, or lost its seat. */
  private leaveNow(client: Client<Socket>, now: number): void {
    client.socket = undefined;
    this.leaveRound(client.id);
    if (this.clients.get(client.id) === client) this.exit(client, now);
  }

  /**
   * A hello must prove that its sender holds the room's key before it gets a seat. A check that answers later holds
   * the socket's next frames back until it does; they are then handled in the order they came.
   */
  private checkMember(socket: Socket, hello: Extract<ClientFrame, { type: "hello" }>): void {
    const connection = this.connections.get(socket)!;
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = this.options.verifyHello(connection.nonce, hello.key, hello.proof);
    } catch {
      verdict = false;
    }
    if (typeof verdict === "boolean") return this.admit(socket, hello, verdict);
    connection.held = [];
    verdict
      .catch(() => false)
      .then((member) => {
        if (this.connections.get(socket) !== connection) return;
        const held = connection.held!;
        connection.held = undefined;
        this.admit(socket, hello, member);
        for (const data of held) this.receive(socket, data);
        this.options.changed?.();
      });
  }

  private admit(socket: Socket, hello: Extract<ClientFrame, { type: "hello" }>, member: boolean): void {
    if (member) return this.welcome(socket, hello);
    refuse(socket, "not-member", "this hello does not prove that it holds the room's key: ask for the link again");
    this.forget(socket, CLOSE_NOT_MEMBER, "not a member");
  }

  private welcome(socket: Socket, hello: Extract<ClientFrame, { type: "hello" }>): void {
    let acked = 0;
    if (hello.resume !== undefined) {
      const { client: id, secret, seq } = hello.resume;
      const known = this.clients.get(id);
      if (known !== undefined) {
        if (sameSecret(known.secret, secret)) return this.resume(socket, known, seq);
        // Someone else's id: no welcome, and nothing changes for that client. The socket may say hello again.
        return refuse(socket, "identity", `client ${id} belongs to another connection`);
      }
      const retired = this.retired.get(id);
      if (retired !== undefined && sameSecret(retired.secret, secret)) acked = retired.lastPost;
    }
    if (this.clients.size >= this.settings.maxClients) {
      refuse(socket, "room-full", `this room holds ${this.settings.maxClients} clients, present or away; try again later`);
      this.forget(socket, CLOSE_ROOM_FULL, "room full");
      return;
    }
    let id = this.options.newToken();
    while (this.clients.has(id) || this.retired.has(id)) id = this.options.newToken();
    const client: Client<Socket> = { id, secret: this.options.newToken(), lastPost: 0, socket: undefined, awayUntil: undefined };
    this.clients.set(id, client);
    // The enter goes in the log before the client's record: a record must never outlive its enter in a crash.
    const enter = this.record({ type: "user-enter", client: id });
    this.store.rememberClient(id, { secret: client.secret });
    this.sendWelcome(socket, client, false, acked, 0);
    this.broadcast(enter);
    this.attach(client, socket);
    this.snapshotIfDue();
  }

  /** The same client on a new socket: no exit and no enter, only the events it missed. */
  private resume(socket: Socket, client: Client<Socket>, seq: number): void {
    if (client.socket !== undefined) {
      // The old socket has not noticed that it is dead; the client knows better.
      this.forget(client.socket, CLOSE_REPLACED, "this client resumed on a newer connection");
    } else {
      this.store.rememberClient(client.id, { secret: client.secret });
    }
    client.awayUntil = undefined;
    // Events past the stored log that a client saw before a restart may have been lost and their numbers reused
    // since for other events: such a client starts again from the room's state, not from its own.
    const held = client.earlierRun === true && seq > this.loadedSeq ? 0 : seq;
    client.earlierRun = false;
    this.sendWelcome(socket, client, true, client.lastPost, held);
    this.attach(client, socket);
  }

  private attach(client: Client<Socket>, socket: Socket): void {
    const connection = this.connections.get(socket)!;
    this.waiting.delete(socket);
    client.socket = socket;
    connection.client = client;
    if (this.present.length === 0) this.silenceCheckAt = this.options.clock() + this.settings.silenceTimeout;
    this.present.push(socket);
    socket.setState({ opened: connection.opened, nonce: connection.nonce, client: client.id } satisfies SocketState);
  }

  /**
   * The welcome, then the snapshot parts when the client needs them, then every event after its starting point.
   * A client that already holds events from `seq` on (and the log still has them) gets only what follows.
   */
  private sendWelcome(socket: Socket, client: Client<Socket>, resumed: boolean, acked: number, seq: number): void {
    const store = this.store;
    const fromHeld = seq > 0 && seq >= store.snapshotSeq && seq <= store.lastSeq;
    const snapshot = fromHeld ? undefined : store.snapshot;
    const from = fromHeld ? seq : store.snapshotSeq;
    const { rateLimit, rateBurst } = this.settings;
    const frames = [
      encodeWelcome({
        client: client.id,
        secret: client.secret,
        resumed,
        acked,
        time: this.time,
        heartbeat: this.settings.heartbeat,
        rate: Number.isFinite(rateLimit) && Number.isFinite(rateBurst) ? { perSecond: rateLimit, burst: rateBurst } : null,
        snapshot: snapshot === undefined ? null : { seq: snapshot.seq, parts: snapshot.parts.length, hash: snapshot.hash },
        from,
        last: store.lastSeq,
      }),
      ...(snapshot?.parts.map((data, part) => encodeSnapshotPart(snapshot.seq, part, snapshot.parts.length, data)) ?? []),
      ...store.eventsAfter(from),
    ];
    try {
      for (const frame of frames) socket.send(frame);
    } catch {
      // The socket is closing; its close makes the client away.
    }
  }

  private post(client: Client<Socket>, id: number, payload: string): void {
    // A resend of a post that is already in the order: the client learns so from the event or its next welcome.
    if (id <= client.lastPost) return;
    // Posts go in the order they were numbered: one refused (say, rate-limited) must not be overtaken by the next,
    // or its resend would look like a duplicate and be lost.
    if (id > client.lastPost + 1) {
      return refuse(client.socket!, "out-of-order", `post ${id} comes before post ${client.lastPost + 1}; send posts in order from ${client.lastPost + 1}`);
    }
    client.lastPost = id;
    this.broadcast(this.record({ type: "message", client: client.id, id, payload }));
    this.snapshotIfDue();
  }

  private exit(client: Client<Socket>, now: number): void {
    this.clients.delete(client.id);
    // The exit goes in the log before the client's record goes: a crash between them leaves a client that exits
    // again after a grace period, never one that stays in the room for good.
    this.broadcast(this.record({ type: "user-exit", client: client.id }));
    this.store.forgetClient(client.id);
    this.store.rememberRetired(client.id, { secret: client.secret, lastPost: client.lastPost, until: now + RETIRED_MEMORY });
    if (this.retired.size > MAX_RETIRED) this.store.forgetRetired(this.retired.keys().next().value!);
    this.snapshotIfDue();
  }

  /**
   * Starts a snapshot round after the latest event when enough events or time have passed since the last one,
   * and at least the gap. Only ever right after an event: replicas hash their replicated time too, and an event
   * is what brings them all to the same time (after a restart, those that saw ticks before it are ahead of the
   * room's stored time). A round started from a wake instead made the chaos run diverge.
   */
  private snapshotIfDue(): void {
    if (this.round !== undefined || this.present.length === 0) return;
    const now = this.options.clock();
    const since = this.store.lastSeq - this.lastDueSeq;
    const { snapshotEvents, snapshotInterval, snapshotGap } = this.settings;
    if (since === 0 || now - this.lastRoundAt < snapshotGap || (since < snapshotEvents && now - this.lastDueAt < snapshotInterval)) return;
    const seq = this.store.lastSeq;
    const voters = [...this.clients.values()].filter((client) => client.socket !== undefined).map((client) => client.id);
    this.round = { seq, voters, hashes: new Map(), deadline: now + this.settings.voteTimeout };
    this.lastDueSeq = seq;
    this.lastDueAt = now;
    this.lastRoundAt = now;
    this.saveRoom();
    // Sent right after event `seq` on every socket, so every replica hashes its state at exactly that point.
    this.broadcast(encodeSnapshotNotice("snapshot-due", seq));
  }

  private vote(client: Client<Socket>, seq: number, hash: string): void {
    const round = this.round;
    if (round === undefined || round.seq !== seq || round.candidates !== undefined || !round.voters.includes(client.id)) {
      // A hash for a round that has just closed is a harmless race; one for a round that never opened is not.
      if (seq > this.lastDueSeq) refuse(client.socket!, "out-of-turn", `no snapshot is due at ${seq}`);
      return;
    }
    round.hashes.set(client.id, hash);
    this.saveRoom();
    if (round.voters.every((voter) => round.hashes.has(voter))) this.countRound();
  }

  /** Compares the hashes; tells the room when they differ, and asks the majority for the snapshot. */
  private countRound(): void {
    const round = this.round!;
    const votes = countVotes(round.hashes);
    if (votes.length > 1) this.broadcast(encodeDivergence(round.seq, round.voters.length, votes));
    const winner = majority(votes, round.voters.length);
    if (winner === undefined) return this.endRound();
    round.candidates = [...winner.clients];
    round.hash = winner.hash;
    this.requestUpload(undefined);
  }

  private endRound(): void {
    this.round = undefined;
    this.saveRoom();
  }

  /** Asks the next client of the majority for the snapshot, after `failed` did not deliver it. */
  private requestUpload(failed: string | undefined): void {
    const round = this.round!;
    round.candidates = round.candidates!.filter((id) => id !== failed);
    const uploader = round.candidates.map((id) => this.clients.get(id)).find((client) => client?.socket !== undefined);
    if (uploader === undefined) return this.endRound();
    round.uploader = uploader.id;
    round.parts = undefined;
    round.checking = undefined;
    round.deadline = this.options.clock() + this.settings.voteTimeout;
    this.saveRoom();
    trySend(uploader.socket!, encodeSnapshotNotice("snapshot-request", round.seq));
  }

  private upload(client: Client<Socket>, frame: SnapshotPart): void {
    const round = this.round;
    if (round === undefined || round.uploader !== client.id || round.seq !== frame.seq) {
      if (frame.seq > this.lastDueSeq) refuse(client.socket!, "out-of-turn", `no snapshot was requested at ${frame.seq}`);
      return;
    }
    if (round.checking) return;
    round.parts ??= new Array<string | undefined>(frame.parts).fill(undefined);
    if (round.parts.length !== frame.parts) return refuse(client.socket!, "bad-frame", `snapshot ${frame.seq} has ${round.parts.length} parts, not ${frame.parts}`);
    round.parts[frame.part] = frame.data;
    if (round.parts.some((part) => part === undefined)) return;
    // The members voted with the hash of the sealed state: an upload that is not exactly that is not stored.
    const parts = round.parts as string[];
    let hash: string | Promise<string>;
    try {
      hash = this.options.digest(parts.join(""));
    } catch {
      hash = "";
    }
    if (typeof hash === "string") return this.checkedUpload(round, parts, hash);
    round.checking = true;
    hash
      .catch(() => "")
      .then((checked) => {
        this.checkedUpload(round, parts, checked);
        this.options.changed?.();
      });
  }

  /** Stores an upload that hashes to the majority's vote; one that does not is the uploader's fault: ask the next. */
  private checkedUpload(round: SnapshotRound, parts: string[], hash: string): void {
    if (this.round !== round || round.parts?.every((part, index) => part === parts[index]) !== true) return;
    if (hash !== round.hash) return this.requestUpload(round.uploader);
    const lastPosts = Object.fromEntries([...this.clients.values()].map((known) => [known.id, known.lastPost]));
    this.store.storeSnapshot({ seq: round.seq, parts, hash, lastPosts });
    this.endRound();
    this.broadcast(encodeSnapshotNotice("snapshot-stored", round.seq));
    this.snapshotIfDue();
  }

  /** A client that went away is no longer waited for in the snapshot round. */
  private leaveRound(id: string): void {
    const round = this.round;
    if (round === undefined) return;
    if (round.candidates === undefined) {
      round.voters = round.voters.filter((voter) => voter !== id || round.hashes.has(voter));
      this.saveRoom();
      if (round.voters.every((voter) => round.hashes.has(voter))) this.countRound();
    } else if (round.uploader === id) {
      this.requestUpload(id);
    }
  }

  /** Stamps, stores and returns the encoded event. */
  private record(event: { type: "message"; client: string; id: number; payload: string } | { type: "user-enter" | "user-exit"; client: string }): string {
    this.time = stampTime(this.options.clock(), this.time);
    // The event carries time past a requested tick: the replicas run their due work on the way to it.
    if (this.tickAt !== undefined && this.time >= this.tickAt) this.tickAt = undefined;
    const seq = this.store.lastSeq + 1;
    // Built field by field so that every event's keys come in the documented order.
    const stamped: ReflectedEvent =
      event.type === "message"
        ? { type: "message", seq, time: this.time, client: event.client, id: event.id, payload: event.payload }
        : { type: event.type, seq, time: this.time, client: event.client };
    this.willStore();
    const text = this.store.append(stamped);
    if (this.settings.writeInterval === 0) this.flush();
    return text;
  }

  /** Our own loop: one closing socket must not stop the others from receiving (PartyKit's broadcast throws halfway). */
  private broadcast(text: string): void {
    for (let index = 0; index < this.present.length; index++) trySend(this.present[index]!, text);
  }
}

/** The options with their undefined settings left out, so that they do not hide the defaults. */
function definedOnly(options: Partial<ReflectorSettings>): Partial<ReflectorSettings> {
  return Object.fromEntries(Object.entries(options).filter(([key, value]) => key in DEFAULT_SETTINGS && value !== undefined));
}

function refuse(socket: ClientSocket, code: ErrorCode, message: string): void {
  trySend(socket, encodeError(code, message));
}

function closeSocket(socket: ClientSocket, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // already closing
  }
}

function trySend(socket: ClientSocket, text: string): void {
  try {
    socket.send(text);
  } catch {
    // The socket is closing; its close handler removes it.
  }
}

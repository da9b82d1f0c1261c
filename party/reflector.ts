import { Delivery, newAccount, trySend, type Receiver } from "./delivery.js";
import { budgetFor, RateLimiter, SendClock } from "./limits.js";
import {
  CLOSE_BEHIND,
  CLOSE_BUSY,
  CLOSE_FLOODING,
  CLOSE_NO_HELLO,
  CLOSE_NOT_MEMBER,
  CLOSE_REPLACED,
  CLOSE_ROOM_FULL,
  CLOSE_SILENT,
  encodeBudget,
  encodeChallenge,
  encodeError,
  encodeSnapshotPart,
  encodeTick,
  encodeWelcome,
  MAX_FRAME_LENGTH,
  parseClientFrame,
  PONG,
  ProtocolError,
  type ClientFrame,
  type ErrorCode,
  type ReflectedEvent,
} from "../common/protocol.js";
import { RoomStore, type RetiredClient, type RoomStorage } from "./room-store.js";
import { DEFAULT_SETTINGS, type ReflectorSettings } from "./settings.js";
import { SnapshotRounds } from "./snapshot-round.js";
import { firstAllowance, TokenBucket, type Budget } from "../common/token-bucket.js";

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
  /** Runs `callback` in `ms` milliseconds: the window in which events are sent together. Without it, none waits. */
  setTimer?: (ms: number, callback: () => void) => void;
  /** Called after the reflector changed something outside a call (a check answered, a batch went out): re-arm the alarm. */
  changed?: () => void;
  /** Sockets still open from before the room slept, each with its `state`: the room takes them back as they were. */
  sockets?: Iterable<Socket>;
  /** When the platform last answered this socket's heartbeat on the room's behalf (Cloudflare does, asleep or not). */
  heartbeatAt?: (socket: Socket) => number | undefined;
}

/** How long, and for how many clients, the reflector remembers a client after its grace period ended. */
const RETIRED_MEMORY = 60 * 60 * 1000;
const MAX_RETIRED = 1000;
/** When a room whose log is full asks a poster to try again. */
const LOG_FULL_RETRY = 5000;

/** One client of the room: present with a socket, or away within its grace period. */
interface Client<Socket> {
  id: string;
  secret: string;
  /** Highest post id sequenced for this client: a post with an id not above it is a resend. */
  lastPost: number;
  /** Its share of the room's posts; kept across its connections, so reconnecting gains nothing. */
  budget: TokenBucket;
  connection: Connection<Socket> | undefined;
  /** While the socket is gone: when the grace period ends. */
  awayUntil: number | undefined;
  /**
   * Set for a client the room loaded from storage without a socket: it saw the previous run of the room, whose last
   * events may not have been written before it stopped. Cleared by its first welcome in this run.
   */
  earlierRun?: boolean;
}

/**
 * One open socket: the client it said hello as (none yet), the challenge its hello answers, its rate limit, when it
 * was last heard from, and its account of what was sent to it. While its hello is checked, its next frames wait.
 */
interface Connection<Socket> extends Receiver<Socket> {
  client: Client<Socket> | undefined;
  nonce: string;
  limiter: RateLimiter;
  clock: SendClock;
  opened: number;
  lastHeard: number;
  held?: (string | ArrayBuffer | ArrayBufferView)[];
}

type Hello = Extract<ClientFrame, { type: "hello" }>;

/** Replicated time never runs backwards, even when the server's clock is adjusted. */
export const stampTime = (clock: number, lastTime: number) => Math.max(clock, lastTime);

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
 * order, keeps clients through short disconnections, and collects snapshots (snapshot-round.ts). Payloads and
 * snapshots pass through as opaque strings.
 *
 * Everything here is synchronous: a sequence number is assigned the moment a frame arrives. Deadlines run on no
 * timer: the platform calls `wake` at `nextWakeAt`, and a room with nothing due needs no JavaScript at all. So that a
 * room may sleep between any two calls, everything it must not forget is in storage (written within
 * `writeInterval`) or in its sockets' `state`, and `open` rebuilds the room from both. The one timer is the
 * delivery's few milliseconds of coalescing, while events come fast.
 */
export class Reflector<Socket extends ClientSocket> {
  /** Every open socket. Keyed by socket, never by the client-chosen `_pk`. */
  private readonly connections = new Map<Socket, Connection<Socket>>();
  private readonly delivery: Delivery<Socket>;
  private readonly rounds: SnapshotRounds;
  /** When each socket that has not said hello yet opened, earliest first. */
  private readonly waiting = new Map<Socket, number>();
  private readonly settings: ReflectorSettings;
  /** Present and away clients by id, in the order they joined. */
  private readonly clients = new Map<string, Client<Socket>>();
  /** Newcomers the room admits: the churn of joining and leaving gives nobody more than one client's share. */
  private readonly joins: TokenBucket;
  private store: RoomStore;
  private time: number;
  /** The last event in storage when this run of the room started. */
  private readonly loadedSeq: number;
  /** When what waits for storage must be written. */
  private writeDueAt = Infinity;
  /** Whether the room record (see `saveRoom`) changed since it was written. */
  private roomChanged = false;
  /** The earliest time the replicas asked to be ticked at: a model has work due then. */
  private tickAt: number | undefined;
  /** When to look for sockets that have gone silent; Infinity while nobody is present. */
  private silenceCheckAt = Infinity;
  /** Each client's share of the room's posts, as last told. */
  private budget: Budget;

  private constructor(
    private readonly options: ReflectorOptions<Socket>,
    store: RoomStore,
  ) {
    const settings = { ...DEFAULT_SETTINGS, ...definedOnly(options) };
    settings.maxFrameLength = Math.min(settings.maxFrameLength, MAX_FRAME_LENGTH);
    this.settings = settings;
    this.store = store;
    const now = options.clock();
    this.time = Math.max(store.lastTime, store.room?.time ?? 0);
    this.tickAt = store.room?.tickAt;
    this.loadedSeq = store.lastSeq;
    this.joins = new TokenBucket(settings.joinRate, settings.joinBurst, now);
    this.budget = budgetFor(settings, 0);
    this.delivery = new Delivery<Socket>({
      coalesce: settings.coalesce,
      maxLag: settings.maxLag,
      clock: options.clock,
      newToken: options.newToken,
      setTimer: options.setTimer,
      behind: (receiver) => this.fellBehind(receiver as Connection<Socket>),
      flushed: options.changed,
    });
    this.rounds = new SnapshotRounds(
      {
        clock: options.clock,
        present: () => [...this.clients.values()].filter((client) => client.connection !== undefined).map((client) => client.id),
        isPresent: (id) => this.clients.get(id)?.connection !== undefined,
        send: (id, text) => this.sendTo(this.clients.get(id)!.connection!, text),
        refuse: (id, code, message) => this.refuse(this.clients.get(id)!.connection!, code, message),
        broadcast: (text) => this.delivery.broadcast(text),
        store: ({ seq, parts, hash }) => {
          const lastPosts = Object.fromEntries([...this.clients.values()].map((known) => [known.id, known.lastPost]));
          this.store.storeSnapshot({ seq, parts, hash, lastPosts });
        },
        digest: options.digest,
        saved: () => this.saveRoom(),
        changed: () => options.changed?.(),
        stored: () => this.startRoundIfSafe(),
      },
      settings,
      store,
      store.room,
    );
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
      const client = reflector.newClient(id, secret, now);
      Object.assign(client, { lastPost: lastPosts.get(id) ?? 0, awayUntil: awayUntil ?? now + reflector.settings.grace, earlierRun: true });
    }
    reflector.budget = budgetFor(reflector.settings, reflector.clients.size);
    const sockets = [...(options.sockets ?? [])].map((socket) => ({ socket, state: socket.state }));
    sockets.sort((a, b) => (isSocketState(a.state) ? a.state.opened : 0) - (isSocketState(b.state) ? b.state.opened : 0));
    for (const { socket, state } of sockets) reflector.takeBack(socket, state, now);
    // A grace period that starts now is written down: were it only in memory, every later wake-up of the room would
    // start it again, and a client whose socket died with the server would never leave.
    for (const [id, { secret, awayUntil }] of store.clients) {
      const client = reflector.clients.get(id)!;
      if (awayUntil === undefined && client.connection === undefined) store.rememberClient(id, { secret, awayUntil: client.awayUntil });
    }
    return reflector;
  }

  /** A socket that stayed open while the room slept: present again as the client it said hello as, or still waiting. */
  private takeBack(socket: Socket, state: unknown, now: number): void {
    const client = isSocketState(state) && state.client !== undefined ? this.clients.get(state.client) : undefined;
    if (!isSocketState(state) || (state.client !== undefined && (client === undefined || client.connection !== undefined))) {
      // Nothing the room knows: the client resumes on a new socket and the room sorts out who it is.
      return closeSocket(socket, CLOSE_REPLACED, "the room does not know this connection");
    }
    const connection = this.newConnection(socket, state.opened, state.nonce, now);
    if (client === undefined) {
      this.waiting.set(socket, state.opened);
      return;
    }
    // Its account restarts: what was sent before the sleep counts as read, and its frames count as sent when handled.
    client.earlierRun = false;
    client.awayUntil = undefined;
    this.attach(client, connection);
  }

  private newConnection(socket: Socket, opened: number, nonce: string, now: number): Connection<Socket> {
    const connection: Connection<Socket> = { socket, client: undefined, nonce, limiter: new RateLimiter(this.settings, now), clock: new SendClock(), opened, lastHeard: now, ...newAccount() };
    this.connections.set(socket, connection);
    return connection;
  }

  private newClient(id: string, secret: string, now: number): Client<Socket> {
    const budget = budgetFor(this.settings, this.clients.size + 1);
    const client: Client<Socket> = { id, secret, lastPost: 0, budget: new TokenBucket(budget.perSecond, budget.burst, now, firstAllowance(budget)), connection: undefined, awayUntil: undefined };
    this.clients.set(id, client);
    return client;
  }

  /** Sockets that have said hello, i.e. clients that are present now. */
  get clientCount(): number {
    return this.delivery.count;
  }

  /** Whether the log after the snapshot reached `maxLog`: the room takes no posts or newcomers until a snapshot. */
  private get logFull(): boolean {
    return this.store.logLength >= this.settings.maxLog;
  }

  /** Whether some client is within its grace period: every client is either present or away. */
  private get anyAway(): boolean {
    return this.clients.size > this.delivery.count;
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
      trySend(socket, encodeError("busy", `${this.settings.maxWaiting} connections to this room are waiting to say hello; try again in a moment`));
      return closeSocket(socket, CLOSE_BUSY, "too many connections waiting");
    }
    const now = this.options.clock();
    const nonce = this.options.newToken();
    this.newConnection(socket, now, nonce, now);
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
      else this.rateLimited(connection, now);
      return;
    }
    const client = connection.client;
    // Only the client asked for a snapshot may send frames up to the hard maximum: its parts are that large.
    const uploading = client !== undefined && this.rounds.isUploader(client.id);
    let frame: ClientFrame | undefined;
    let problem: ProtocolError | undefined;
    try {
      frame = parseClientFrame(data, uploading ? MAX_FRAME_LENGTH : this.settings.maxFrameLength);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      problem = error;
    }
    const limit = this.settings.maxFrameLength;
    if (uploading && frame !== undefined && !(frame.type === "snapshot" && this.rounds.isUploader(client.id, frame.seq)) && typeof data === "string" && data.length > limit) {
      problem = new ProtocolError("frame-too-large", `frame is ${data.length} characters; the limit is ${limit}`);
    }
    const sentAt = connection.clock.at(now, frame?.t);
    const awaited = frame?.type === "snapshot" && problem === undefined && client !== undefined && this.rounds.awaitsPart(client.id, frame);
    if (!awaited && !connection.limiter.take(sentAt)) return this.rateLimited(connection, sentAt);
    if (problem !== undefined) return this.refuse(connection, problem.code, problem.message);
    if (frame!.client !== undefined && frame!.client !== client?.id) {
      return this.refuse(connection, "identity", `client ${frame!.client} belongs to another connection; the reflector knows who sent this frame`);
    }
    this.handle(connection, frame!, sentAt);
  }

  private handle(connection: Connection<Socket>, frame: ClientFrame, sentAt: number): void {
    // A heartbeat is answered whoever sends it, as the platform answers it when it does so for the room.
    if (frame.type === "ping") return trySend(connection.socket, PONG);
    const client = connection.client;
    if (client === undefined) {
      if (frame.type === "hello") this.checkMember(connection, frame);
      else this.refuse(connection, "out-of-turn", `send hello before ${frame.type}`);
      return;
    }
    switch (frame.type) {
      case "hello":
        return this.refuse(connection, "out-of-turn", "this connection has already said hello");
      case "publish":
        return this.post(client, frame.id, frame.payload, sentAt);
      case "hash":
        return this.rounds.vote(client.id, frame.seq, frame.hash);
      case "snapshot":
        return this.rounds.upload(client.id, frame);
      case "tick-request":
        return this.requestTick(frame.time);
      case "ack":
        return this.delivery.acknowledge(connection, frame.mark);
      case "leave":
        // A deliberate goodbye needs no grace period.
        this.forget(connection);
        return this.leaveNow(client, this.options.clock());
    }
  }

  /** A socket closed or failed: its client is away until it resumes or its grace period ends. */
  disconnect(socket: Socket): void {
    const connection = this.connections.get(socket);
    if (connection === undefined) return;
    const client = connection.client;
    this.forget(connection);
    if (client !== undefined && client.connection === connection) this.goAway(client, this.options.clock());
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
    const deadline = this.rounds.deadline;
    if (deadline !== undefined && deadline < due) due = deadline;
    // Insertion order is opening order, so the first socket waiting for its hello is the first to time out.
    if (this.waiting.size > 0) due = Math.min(due, this.waiting.values().next().value! + this.settings.helloTimeout);
    if (this.delivery.count > 0) {
      if (this.tickAt !== undefined && this.tickAt < due) due = this.tickAt;
      if (this.silenceCheckAt < due) due = this.silenceCheckAt;
    }
    if (this.clients.size === 0 && this.store.lastSeq > 0) due = Math.min(due, this.store.lastTime + this.settings.retention);
    // A round starts only at the time of the last event (see startRoundIfSafe); after a tick it waits for the next.
    const retryAt = this.time === this.store.lastTime ? this.rounds.retryAt(this.store.lastSeq) : undefined;
    if (retryAt !== undefined && retryAt < due) due = retryAt;
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
      this.forget(this.connections.get(socket)!, CLOSE_NO_HELLO, "no hello");
    }
    if (this.silenceCheckAt <= now) this.dropSilent(now);
    if (this.anyAway) {
      for (const client of [...this.clients.values()]) {
        if (client.awayUntil !== undefined && client.awayUntil <= now) this.exit(client, now);
      }
    }
    for (const [id, { until }] of [...this.retired]) if (until <= now) this.store.forgetRetired(id);
    this.rounds.expire(now);
    // A round that is owed starts now (see SnapshotRounds.retryAt), and one for a full log, due or not.
    this.startRoundIfSafe(this.logFull);
    if (this.tickAt !== undefined && this.tickAt <= now) this.tick(now);
    if (this.clients.size === 0 && this.store.lastSeq > 0 && now >= this.store.lastTime + this.settings.retention) this.deleteRoom();
  }

  /**
   * Starts a round after the last event when one is due, or `force`d (the log is full: an event that fills it starts
   * the round that would empty it, as no later event could), but not once a tick has moved replicated time
   * past that event: replicas hash their time too, and must all be at the event's.
   */
  private startRoundIfSafe(force = false): void {
    if (this.time === this.store.lastTime) this.rounds.startIfDue(this.store.lastSeq, force);
  }

  /** Writes everything that waits for storage. */
  private flush(): void {
    this.store.flush(this.roomChanged ? { time: this.time, tickAt: this.tickAt, ...this.rounds.record() } : undefined);
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

  /** A replica has model work due at `time`: tick then, unless an event carries time past it first. */
  private requestTick(time: number): void {
    if (time <= this.time || (this.tickAt !== undefined && this.tickAt <= time)) return;
    this.tickAt = time;
    this.saveRoom();
  }

  private tick(now: number): void {
    this.tickAt = undefined;
    // Nobody to tick: the replicas ask again when they come back.
    if (this.delivery.count > 0) {
      this.time = stampTime(now, this.time);
      this.delivery.broadcast(encodeTick(this.time));
    }
    this.saveRoom();
  }

  /**
   * Closes the sockets that have sent nothing, heartbeats included, for `silenceTimeout`: their peers are gone
   * without a word. Looks again when the quietest of the others could be silent that long.
   */
  private dropSilent(now: number): void {
    let quietest = Infinity;
    for (const client of [...this.clients.values()]) {
      const connection = client.connection;
      if (connection === undefined) continue;
      const heard = Math.max(connection.lastHeard, this.options.heartbeatAt?.(connection.socket) ?? 0);
      if (now - heard >= this.settings.silenceTimeout) {
        this.forget(connection, CLOSE_SILENT, "no heartbeat");
        this.goAway(client, now);
      } else {
        quietest = Math.min(quietest, heard);
      }
    }
    this.silenceCheckAt = quietest + this.settings.silenceTimeout;
  }

  /** A connection received more than `maxLag` beyond what it acknowledged: it resumes where it is, on a new one. */
  private fellBehind(connection: Connection<Socket>): void {
    const client = connection.client;
    this.forget(connection, CLOSE_BEHIND, "too far behind");
    if (client?.connection === connection) this.goAway(client, this.options.clock());
  }

  private deleteRoom(): void {
    this.store.deleteAll();
    this.store = RoomStore.empty(this.options.storage);
    this.writeDueAt = Infinity;
    this.roomChanged = false;
    this.time = 0;
    this.tickAt = undefined;
  }

  /** A frame over the rate limit is refused; a connection refused too often within one refill window is closed. */
  private rateLimited(connection: Connection<Socket>, now: number): void {
    const { rateLimit, rateBurst } = this.settings;
    this.refuse(connection, "rate-limited", `more than ${rateBurst} frames at once or ${rateLimit} per second; this frame was dropped`);
    if (!connection.limiter.refused(now)) return;
    // A flooder loses its seat at once: no grace period, and the others see it leave.
    const client = connection.client;
    this.forget(connection, CLOSE_FLOODING, "flooding");
    if (client !== undefined) this.leaveNow(client, this.options.clock());
  }

  /** Forgets a connection, closing its socket with `code` when one is given: its frames are ignored from now on. */
  private forget(connection: Connection<Socket>, code?: number, reason?: string): void {
    if (connection.client?.connection === connection) this.delivery.remove(connection);
    if (this.delivery.count === 0) this.silenceCheckAt = Infinity;
    this.connections.delete(connection.socket);
    this.waiting.delete(connection.socket);
    if (code !== undefined) closeSocket(connection.socket, code, reason ?? "");
  }

  /** A client's socket is gone: it stays in the room, away, for the grace period. */
  private goAway(client: Client<Socket>, now: number): void {
    client.connection = undefined;
    client.awayUntil = now + this.settings.grace;
    this.store.rememberClient(client.id, { secret: client.secret, awayUntil: client.awayUntil });
    this.rounds.leave(client.id);
  }

  /** A client leaves at once, without a grace period: it said goodbye, or lost its seat. */
  private leaveNow(client: Client<Socket>, now: number): void {
    client.connection = undefined;
    this.rounds.leave(client.id);
    if (this.clients.get(client.id) === client) this.exit(client, now);
  }

  /**
   * A hello must prove that its sender holds the room's key before it gets a seat. A check that answers later holds
   * the socket's next frames back until it does; they are then handled in the order they came.
   */
  private checkMember(connection: Connection<Socket>, hello: Hello): void {
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
        if (this.connections.get(connection.socket) !== connection) return;
        const held = connection.held!;
        connection.held = undefined;
        this.admit(connection, hello, member);
        for (const data of held) this.receive(connection.socket, data);
        this.options.changed?.();
      });
  }

  private admit(connection: Connection<Socket>, hello: Hello, member: boolean): void {
    if (member) return this.welcome(connection, hello);
    this.refuse(connection, "not-member", "this hello does not prove that it holds the room's key: ask for the link again");
    this.forget(connection, CLOSE_NOT_MEMBER, "not a member");
  }

  private welcome(connection: Connection<Socket>, hello: Hello): void {
    let acked = 0;
    if (hello.resume !== undefined) {
      const { client: id, secret, seq } = hello.resume;
      const known = this.clients.get(id);
      if (known !== undefined) {
        if (sameSecret(known.secret, secret)) return this.resume(connection, known, seq);
        // Someone else's id: no welcome, and nothing changes for that client. The socket may say hello again.
        return this.refuse(connection, "identity", `client ${id} belongs to another connection`);
      }
      const retired = this.retired.get(id);
      if (retired !== undefined && sameSecret(retired.secret, secret)) acked = retired.lastPost;
    }
    const now = this.options.clock();
    const full =
      this.clients.size >= this.settings.maxClients
        ? { code: "room-full" as const, message: `this room holds ${this.settings.maxClients} clients, present or away; try again later`, close: CLOSE_ROOM_FULL, reason: "room full" }
        : this.logFull
          ? { code: "log-full" as const, message: "this room's history is full until its members store a snapshot; try again later", close: CLOSE_BUSY, reason: "log full" }
          : !this.joins.take(now)
            ? { code: "busy" as const, message: "many newcomers joined this room just now; try again in a moment", close: CLOSE_BUSY, reason: "too many newcomers" }
            : undefined;
    if (full !== undefined) {
      this.refuse(connection, full.code, full.message);
      return this.forget(connection, full.close, full.reason);
    }
    let id = this.options.newToken();
    while (this.clients.has(id) || this.retired.has(id)) id = this.options.newToken();
    const client = this.newClient(id, this.options.newToken(), now);
    // The enter goes in the log before the client's record: a record must never outlive its enter in a crash.
    const enter = this.record({ type: "user-enter", client: id });
    this.store.rememberClient(id, { secret: client.secret });
    this.retell();
    this.sendWelcome(connection, client, false, acked, 0);
    // To the others, now: the newcomer has it in its welcome, and would get it twice from a later batch.
    this.delivery.broadcast(enter);
    this.delivery.flush();
    this.attach(client, connection);
    this.startRoundIfSafe(this.logFull);
  }

  /** The same client on a new socket: no exit and no enter, only the events it missed. */
  private resume(connection: Connection<Socket>, client: Client<Socket>, seq: number): void {
    if (client.connection !== undefined) {
      // The old socket has not noticed that it is dead; the client knows better.
      this.forget(client.connection, CLOSE_REPLACED, "this client resumed on a newer connection");
    } else {
      this.store.rememberClient(client.id, { secret: client.secret });
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
    if (this.delivery.count === 0) this.silenceCheckAt = this.options.clock() + this.settings.silenceTimeout;
    this.delivery.add(connection);
    connection.socket.setState({ opened: connection.opened, nonce: connection.nonce, client: client.id } satisfies SocketState);
  }

  /**
   * The welcome, then the snapshot parts when the client needs them, then every event after its starting point.
   * A client that already holds events from `seq` on (and the log still has them) gets only what follows. Whatever
   * waits to go out in a batch goes first: the welcome must follow every event it leaves out.
   */
  private sendWelcome(connection: Connection<Socket>, client: Client<Socket>, resumed: boolean, acked: number, seq: number): void {
    this.delivery.flush();
    const store = this.store;
    const fromHeld = seq > 0 && seq >= store.snapshotSeq && seq <= store.lastSeq;
    const snapshot = fromHeld ? undefined : store.snapshot;
    const from = fromHeld ? seq : store.snapshotSeq;
    const { rateLimit, rateBurst, writeInterval } = this.settings;
    const limited = Number.isFinite(rateLimit) && Number.isFinite(rateBurst);
    const frames = [
      encodeWelcome({
        client: client.id,
        secret: client.secret,
        resumed,
        acked,
        time: this.time,
        heartbeat: this.settings.heartbeat,
        rate: limited ? { perSecond: rateLimit, burst: rateBurst } : null,
        budget: Number.isFinite(this.budget.perSecond) ? this.budget : null,
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
    for (const frame of frames) this.sendTo(connection, frame);
  }

  /** Each client's share of the room's posts changed with the number of clients: tell them, so they pace their posts. */
  private retell(): void {
    const budget = budgetFor(this.settings, this.clients.size);
    if (budget.perSecond === this.budget.perSecond && budget.burst === this.budget.burst) return;
    this.budget = budget;
    if (Number.isFinite(budget.perSecond)) this.delivery.broadcast(encodeBudget(budget));
  }

  private post(client: Client<Socket>, id: number, payload: string, sentAt: number): void {
    const connection = client.connection!;
    // A resend of a post that is already in the order: the client learns so from the event or its next welcome.
    if (id <= client.lastPost) return;
    // Posts go in the order they were numbered: one refused (say, over budget) must not be overtaken by the next,
    // or its resend would look like a duplicate and be lost.
    if (id > client.lastPost + 1) {
      return this.refuse(connection, "out-of-order", `post ${id} comes before post ${client.lastPost + 1}; send posts in order from ${client.lastPost + 1}`);
    }
    if (this.logFull) {
      return this.refuse(connection, "log-full", "this room's history is full until its members store a snapshot; this post was not taken", LOG_FULL_RETRY);
    }
    const { perSecond, burst } = this.budget;
    client.budget.retune(perSecond, burst, sentAt);
    if (!client.budget.take(sentAt)) {
      const rate = `${Math.round(perSecond * 100) / 100} posts a second, ${burst} at once`;
      return this.refuse(connection, "over-budget", `this room takes ${rate} from each of its ${this.clients.size} clients now; this post was not taken`, client.budget.waitTime(sentAt));
    }
    client.lastPost = id;
    this.delivery.broadcast(this.record({ type: "message", client: client.id, id, payload }));
    this.startRoundIfSafe(this.logFull);
  }

  private exit(client: Client<Socket>, now: number): void {
    this.clients.delete(client.id);
    // The exit goes in the log before the client's record goes: a crash between them leaves a client that exits
    // again after a grace period, never one that stays in the room for good.
    this.delivery.broadcast(this.record({ type: "user-exit", client: client.id }));
    this.store.forgetClient(client.id);
    this.store.rememberRetired(client.id, { secret: client.secret, lastPost: client.lastPost, until: now + RETIRED_MEMORY });
    if (this.retired.size > MAX_RETIRED) this.store.forgetRetired(this.retired.keys().next().value!);
    this.retell();
    this.startRoundIfSafe(this.logFull);
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
    this.rounds.counted(text.length);
    if (this.settings.writeInterval === 0) this.flush();
    return text;
  }

  /** Sends to one connection; a welcomed one counts it against what it may hold unacknowledged. */
  private sendTo(connection: Connection<Socket>, text: string): void {
    if (connection.client === undefined && connection.welcomeLength === 0) trySend(connection.socket, text);
    else this.delivery.send(connection, text);
  }

  private refuse(connection: Connection<Socket>, code: ErrorCode, message: string, retry?: number): void {
    this.sendTo(connection, encodeError(code, message, { retry }));
  }
}

/** The options with their undefined settings left out, so that they do not hide the defaults. */
function definedOnly(options: Partial<ReflectorSettings>): Partial<ReflectorSettings> {
  return Object.fromEntries(Object.entries(options).filter(([key, value]) => key in DEFAULT_SETTINGS && value !== undefined));
}

function closeSocket(socket: ClientSocket, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // already closing
  }
}

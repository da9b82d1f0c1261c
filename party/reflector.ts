import {
  encodeDivergence,
  encodeError,
  encodeSnapshotNotice,
  encodeSnapshotPart,
  encodeTick,
  encodeWelcome,
  majority,
  MAX_FRAME_LENGTH,
  parseClientFrame,
  ProtocolError,
  type ClientFrame,
  type ErrorCode,
  type ReflectedEvent,
  type SnapshotPart,
  type Vote,
} from "./protocol.js";
import { RoomStore, type RetiredClient, type RoomStorage } from "./room-store.js";
import { TokenBucket } from "./token-bucket.js";

/** Anything the reflector can send a text frame to: a PartyKit connection, or a plain object in tests. */
export interface ClientSocket {
  send(text: string): void;
  close(code?: number, reason?: string): void;
}

/**
 * What one connection, and one room, may use of the reflector; each can be set per deployment (see
 * `docs/security.md`). Unit tests turn them off with Infinity; PartyKit variables take finite numbers.
 */
export interface ReflectorLimits {
  /** Largest client frame, in UTF-16 code units; never more than MAX_FRAME_LENGTH, which storage needs. */
  maxFrameLength: number;
  /** Frames per second a connection may send on average: its token bucket refills at this rate... */
  rateLimit: number;
  /** ...up to this many tokens, which is also how many frames it may send at once. */
  rateBurst: number;
  /**
   * A connection that has more than this many frames refused as rate-limited within one refill window
   * (rateBurst / rateLimit seconds: the time an empty bucket takes to fill) is closed as flooding.
   */
  floodRefusals: number;
  /** Clients, present or away, a room holds; a newcomer beyond them is refused. Resumes are always allowed. */
  maxClients: number;
  /** Milliseconds a socket may stay open without saying hello: sockets that never join must not pile up. */
  helloTimeout: number;
}

export const DEFAULT_LIMITS: ReflectorLimits = {
  maxFrameLength: MAX_FRAME_LENGTH,
  rateLimit: 20,
  rateBurst: 60,
  floodRefusals: 100,
  maxClients: 100,
  helloTimeout: 10_000,
};

/** The room's timings, all in milliseconds, and its limits; each can be set per deployment (see `docs/protocol.md`). */
export interface ReflectorSettings extends ReflectorLimits {
  /** Silence after which the reflector sends a tick. */
  tickInterval: number;
  /** How long a client whose socket dropped stays present, waiting for it to resume. */
  grace: number;
  /**
   * A snapshot falls due after this many events, which is also the most a newcomer replays below the gap's
   * rate. Each round is a burst of about three frames per client; at 500 under load they lengthened the
   * delivery tail by a third (docs/performance.md, item 10)...
   */
  snapshotEvents: number;
  /** ...or after this long with at least one event, whichever comes first... */
  snapshotInterval: number;
  /**
   * ...but never sooner than this after the last round: under heavy traffic `snapshotEvents` alone would start
   * several rounds a second, each with a vote, an upload and storage writes.
   */
  snapshotGap: number;
  /** How long the reflector waits for hashes, and then for an upload, before it gives up on a snapshot. */
  voteTimeout: number;
  /**
   * How long an event may wait to be written to storage with the events after it; 0 writes each one at once.
   * `partykit dev` commits every write with an fsync on the room's thread (about 1.5 ms here), which holds
   * every frame back meanwhile: fewer, larger writes keep that out of the latency tail.
   */
  writeInterval: number;
}

export const DEFAULT_SETTINGS: ReflectorSettings = {
  tickInterval: 1000,
  grace: 10_000,
  snapshotEvents: 1000,
  snapshotInterval: 60_000,
  snapshotGap: 1000,
  voteTimeout: 10_000,
  writeInterval: 1000,
  ...DEFAULT_LIMITS,
};

/** Settings for one room; limits left out take their defaults. */
export interface ReflectorOptions extends Omit<ReflectorSettings, keyof ReflectorLimits>, Partial<ReflectorLimits> {
  storage: RoomStorage;
  /** The server's clock, in milliseconds since the epoch. */
  clock: () => number;
  /** Makes a fresh, unguessable token: client ids and resume secrets. */
  newToken: () => string;
}

/** Close code for a socket whose client resumed on a newer socket. */
export const CLOSE_REPLACED = 4000;
/** Close code for a connection to a room whose id is not a valid room id (after an error frame `bad-room`). */
export const CLOSE_BAD_ROOM = 4001;
/** Close code for a new client refused because the room holds `maxClients` clients (after an error frame `room-full`). */
export const CLOSE_ROOM_FULL = 4002;
/** Close code for a connection that kept sending above its rate limit (after its last `rate-limited` error frame). */
export const CLOSE_FLOODING = 4003;
/** Close code for a socket that did not say hello within `helloTimeout`. */
export const CLOSE_NO_HELLO = 4004;
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
   * Set for a client the room loaded from storage: it saw the previous run of the room, whose last events may
   * not have been written before it stopped. Cleared by its first welcome in this run.
   */
  earlierRun?: boolean;
}

/** A snapshot point in progress: first the hashes, then one upload from a client of the majority. */
interface SnapshotRound {
  seq: number;
  /** Clients expected to report a hash, in the order they joined. */
  voters: string[];
  hashes: Map<string, string>;
  deadline: number;
  /** Set once the hashes are counted: clients holding the majority's state, in the order they will be asked. */
  candidates?: string[];
  uploader?: string;
  parts?: (string | undefined)[];
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
    private readonly limits: Pick<ReflectorLimits, "rateLimit" | "rateBurst" | "floodRefusals">,
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

/**
 * What a room's retention alarm should do: delete an idle empty room, or look again when it would become idle.
 * A room with no clients and no history has nothing to delete and needs no alarm.
 */
export function retentionAction(now: number, lastActivity: number | undefined, retention: number, empty: boolean): { delete: boolean; alarmAt?: number } {
  if (!empty || lastActivity === undefined) return { delete: false };
  if (now >= lastActivity + retention) return { delete: true };
  return { delete: false, alarmAt: lastActivity + retention };
}

/** Compares secrets in time independent of where they differ. */
function sameSecret(a: string, b: string): boolean {
  let difference = a.length ^ b.length;
  for (let index = 0; index < Math.max(a.length, b.length); index++) difference |= (a.charCodeAt(index) | 0) ^ (b.charCodeAt(index) | 0);
  return difference === 0;
}

/**
 * One room's reflector: gives every event the next sequence number and the server's time, stores it and sends it
 * to every client, the sender included. It decides client ids, emits `user-enter` / `user-exit` into the same
 * order, keeps clients through short disconnections, and collects snapshots. Payloads and snapshots pass through
 * as opaque strings.
 *
 * Everything here is synchronous: a sequence number is assigned the moment a frame arrives.
 */
export class Reflector<Socket extends ClientSocket> {
  /** Every open socket; undefined until it says hello. Keyed by socket, never by the client-chosen `_pk`. */
  private readonly sockets = new Map<Socket, Client<Socket> | undefined>();
  /**
   * The sockets that have said hello, whom every broadcast goes to. An array rather than a pass over `sockets`:
   * in workerd a map's iterator allocates a result object per entry, i.e. per delivery, and that garbage alone
   * made the room collect more often than the baseline room (docs/performance.md, item 10).
   */
  private readonly present: Socket[] = [];
  /** Every open socket's rate limiter, from its first frame on (hello counts). */
  private readonly limiters = new Map<Socket, RateLimiter>();
  /** When each socket that has not said hello yet opened. */
  private readonly openedAt = new Map<Socket, number>();
  private readonly limits: ReflectorLimits;
  /** Present and away clients by id, in the order they joined. */
  private readonly clients = new Map<string, Client<Socket>>();
  /**
   * Clients whose grace period ended: a return within RETIRED_MEMORY learns which of its posts got through. The
   * store's map, kept in room storage: a client that returns after a server restart must not resend its posts.
   */
  private readonly retired: ReadonlyMap<string, RetiredClient>;
  private time: number;
  private lastSentAt: number;
  private lastDueSeq: number;
  private lastDueAt: number;
  /** When the last snapshot round started in this run of the room: the gap applies between rounds only. */
  private lastRoundAt = -Infinity;
  /** The last event in storage when this run of the room started. */
  private readonly loadedSeq: number;
  /** When the oldest unwritten event must be written to storage. */
  private writeDueAt = Infinity;
  private round: SnapshotRound | undefined;

  private constructor(
    private readonly options: ReflectorOptions,
    private readonly store: RoomStore,
  ) {
    const now = options.clock();
    this.limits = {
      maxFrameLength: Math.min(options.maxFrameLength ?? DEFAULT_LIMITS.maxFrameLength, MAX_FRAME_LENGTH),
      rateLimit: options.rateLimit ?? DEFAULT_LIMITS.rateLimit,
      rateBurst: options.rateBurst ?? DEFAULT_LIMITS.rateBurst,
      floodRefusals: options.floodRefusals ?? DEFAULT_LIMITS.floodRefusals,
      maxClients: options.maxClients ?? DEFAULT_LIMITS.maxClients,
      helloTimeout: options.helloTimeout ?? DEFAULT_LIMITS.helloTimeout,
    };
    this.retired = store.retired;
    this.time = store.lastTime;
    this.lastSentAt = now;
    this.lastDueSeq = store.lastSeq;
    this.loadedSeq = store.lastSeq;
    this.lastDueAt = now;
  }

  /**
   * Loads the room. Clients it still counts as present were connected to an earlier run of the server: each gets a
   * grace period from now to come back as itself, as after any dropped socket.
   */
  static async open<Socket extends ClientSocket>(options: ReflectorOptions): Promise<Reflector<Socket>> {
    const store = await RoomStore.load(options.storage);
    const reflector = new Reflector<Socket>(options, store);
    const lastPosts = new Map(Object.entries(store.snapshot?.lastPosts ?? {}));
    for (const event of store.replay()) if (event.type === "message") lastPosts.set(event.client, event.id);
    const awayUntil = options.clock() + options.grace;
    for (const [id, secret] of store.clients) {
      reflector.clients.set(id, { id, secret, lastPost: lastPosts.get(id) ?? 0, socket: undefined, awayUntil, earlierRun: true });
    }
    return reflector;
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

  /** A socket opened; it becomes a client when it says hello. */
  connect(socket: Socket): void {
    const now = this.options.clock();
    this.sockets.set(socket, undefined);
    this.limiters.set(socket, new RateLimiter(this.limits, now));
    this.openedAt.set(socket, now);
  }

  /**
   * Handles one frame from a socket. A bad frame gets one error frame back and changes nothing; so does a frame
   * over the connection's rate limit, and a connection that keeps sending over it is closed as flooding.
   */
  receive(socket: Socket, data: string | ArrayBuffer | ArrayBufferView): void {
    if (!this.sockets.has(socket)) return;
    const client = this.sockets.get(socket);
    const uploading = client !== undefined && this.round?.uploader === client.id;
    let frame: ClientFrame | undefined;
    let problem: ProtocolError | undefined;
    try {
      // Only the client asked for a snapshot may send frames up to the hard maximum: its parts are that large.
      frame = parseClientFrame(data, uploading ? MAX_FRAME_LENGTH : this.limits.maxFrameLength);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      problem = error;
    }
    const requested = frame?.type === "snapshot" && uploading && frame.seq === this.round!.seq;
    const limit = this.limits.maxFrameLength;
    if (uploading && !requested && typeof data === "string" && data.length > limit) {
      problem = new ProtocolError("frame-too-large", `frame is ${data.length} characters; the limit is ${limit}`);
    }
    // The parts of a snapshot the reflector asked for are never throttled, however many there are.
    if (!requested && !this.limiters.get(socket)!.take(this.options.clock())) return this.rateLimited(socket, client);
    if (problem !== undefined) return refuse(socket, problem.code, problem.message);
    if (frame!.client !== undefined && frame!.client !== client?.id) {
      return refuse(socket, "identity", `client ${frame!.client} belongs to another connection; the reflector knows who sent this frame`);
    }
    this.handle(socket, client, frame!);
  }

  private handle(socket: Socket, client: Client<Socket> | undefined, frame: ClientFrame): void {
    if (client === undefined) {
      if (frame.type === "hello") this.welcome(socket, frame);
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
      case "leave":
        // A deliberate goodbye needs no grace period.
        this.forget(socket);
        return this.leaveNow(client, this.options.clock());
    }
  }

  /** A socket closed or failed: its client is away until it resumes or its grace period ends. */
  disconnect(socket: Socket): void {
    const client = this.sockets.get(socket);
    this.forget(socket);
    if (client === undefined || client.socket !== socket) return;
    client.socket = undefined;
    client.awayUntil = this.options.clock() + this.options.grace;
    this.leaveRound(client.id);
  }

  /**
   * Milliseconds until `wake` has something to do, or undefined when nothing is pending. The adapter asks after
   * every frame, so it builds nothing, and walks the clients only while some are away.
   */
  nextWakeIn(): number | undefined {
    let due = this.clientCount > 0 ? this.lastSentAt + this.options.tickInterval : Infinity;
    if (this.anyAway) for (const client of this.clients.values()) if (client.awayUntil !== undefined && client.awayUntil < due) due = client.awayUntil;
    if (this.round !== undefined) due = Math.min(due, this.round.deadline);
    if (this.store.unwrittenEvents > 0) due = Math.min(due, this.writeDueAt);
    // Insertion order is opening order, so the first socket waiting for its hello is the first to time out.
    if (this.openedAt.size > 0) due = Math.min(due, this.openedAt.values().next().value! + this.limits.helloTimeout);
    return due === Infinity ? undefined : Math.max(0, due - this.options.clock());
  }

  /**
   * Does what is due: writes the events waiting for storage, closes sockets that never said hello, ends grace
   * periods, gives up on a stalled snapshot, and ticks a quiet room.
   */
  wake(): void {
    const now = this.options.clock();
    if (this.writeDueAt <= now) this.store.flushEvents();
    for (const [socket, opened] of this.openedAt) {
      if (opened + this.limits.helloTimeout > now) break;
      this.forget(socket, CLOSE_NO_HELLO, "no hello");
    }
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
    if (this.clientCount > 0 && now - this.lastSentAt >= this.options.tickInterval) {
      this.time = stampTime(now, this.time);
      this.broadcast(encodeTick(this.time));
    }
  }

  /** A frame over the rate limit is refused; a connection refused too often within one refill window is closed. */
  private rateLimited(socket: Socket, client: Client<Socket> | undefined): void {
    const { rateLimit, rateBurst } = this.limits;
    refuse(socket, "rate-limited", `more than ${rateBurst} frames at once or ${rateLimit} per second; this frame was dropped`);
    const now = this.options.clock();
    if (!this.limiters.get(socket)!.refused(now)) return;
    // A flooder loses its seat at once: no grace period, and the others see it leave.
    this.forget(socket, CLOSE_FLOODING, "flooding");
    if (client !== undefined) this.leaveNow(client, now);
  }

  /** Forgets a socket, closing it with `code` when one is given: its frames are ignored from now on. */
  private forget(socket: Socket, code?: number, reason?: string): void {
    if (this.sockets.get(socket) !== undefined) this.present.splice(this.present.indexOf(socket), 1);
    this.sockets.delete(socket);
    this.limiters.delete(socket);
    this.openedAt.delete(socket);
    if (code !== undefined) closeSocket(socket, code, reason ?? "");
  }

  /** A client leaves at once, without a grace period: it said goodbye, or lost its seat. */
  private leaveNow(client: Client<Socket>, now: number): void {
    client.socket = undefined;
    this.leaveRound(client.id);
    if (this.clients.get(client.id) === client) this.exit(client, now);
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
    if (this.clients.size >= this.limits.maxClients) {
      refuse(socket, "room-full", `this room holds ${this.limits.maxClients} clients, present or away; try again later`);
      this.forget(socket, CLOSE_ROOM_FULL, "room full");
      return;
    }
    let id = this.options.newToken();
    while (this.clients.has(id) || this.retired.has(id)) id = this.options.newToken();
    const client: Client<Socket> = { id, secret: this.options.newToken(), lastPost: 0, socket: undefined, awayUntil: undefined };
    this.clients.set(id, client);
    // The enter goes in the log before the client's record: a record must never outlive its enter in a crash.
    const enter = this.record({ type: "user-enter", client: id });
    this.store.rememberClient(id, client.secret);
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
    this.openedAt.delete(socket);
    client.socket = socket;
    this.sockets.set(socket, client);
    this.present.push(socket);
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
    const frames = [
      encodeWelcome({
        client: client.id,
        secret: client.secret,
        resumed,
        acked,
        time: this.time,
        tick: this.options.tickInterval,
        rate: Number.isFinite(this.limits.rateLimit) && Number.isFinite(this.limits.rateBurst) ? { perSecond: this.limits.rateLimit, burst: this.limits.rateBurst } : null,
        snapshot: snapshot === undefined ? null : { seq: snapshot.seq, parts: snapshot.parts.length },
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
    if (this.round !== undefined || this.clientCount === 0) return;
    const now = this.options.clock();
    const since = this.store.lastSeq - this.lastDueSeq;
    const { snapshotEvents, snapshotInterval, snapshotGap } = this.options;
    if (since === 0 || now - this.lastRoundAt < snapshotGap || (since < snapshotEvents && now - this.lastDueAt < snapshotInterval)) return;
    const seq = this.store.lastSeq;
    const voters = [...this.clients.values()].filter((client) => client.socket !== undefined).map((client) => client.id);
    this.round = { seq, voters, hashes: new Map(), deadline: now + this.options.voteTimeout };
    this.lastDueSeq = seq;
    this.lastDueAt = now;
    this.lastRoundAt = now;
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
    if (round.voters.every((voter) => round.hashes.has(voter))) this.countRound();
  }

  /** Compares the hashes; tells the room when they differ, and asks the majority for the snapshot. */
  private countRound(): void {
    const round = this.round!;
    const votes = countVotes(round.hashes);
    if (votes.length > 1) this.broadcast(encodeDivergence(round.seq, votes));
    const winner = majority(votes);
    if (winner === undefined) {
      this.round = undefined;
      return;
    }
    round.candidates = [...winner.clients];
    this.requestUpload(undefined);
  }

  /** Asks the next client of the majority for the snapshot, after `failed` did not deliver it. */
  private requestUpload(failed: string | undefined): void {
    const round = this.round!;
    round.candidates = round.candidates!.filter((id) => id !== failed);
    const uploader = round.candidates.map((id) => this.clients.get(id)).find((client) => client?.socket !== undefined);
    if (uploader === undefined) {
      this.round = undefined;
      return;
    }
    round.uploader = uploader.id;
    round.parts = undefined;
    round.deadline = this.options.clock() + this.options.voteTimeout;
    trySend(uploader.socket!, encodeSnapshotNotice("snapshot-request", round.seq));
  }

  private upload(client: Client<Socket>, frame: SnapshotPart): void {
    const round = this.round;
    if (round === undefined || round.uploader !== client.id || round.seq !== frame.seq) {
      if (frame.seq > this.lastDueSeq) refuse(client.socket!, "out-of-turn", `no snapshot was requested at ${frame.seq}`);
      return;
    }
    round.parts ??= new Array<string | undefined>(frame.parts).fill(undefined);
    if (round.parts.length !== frame.parts) return refuse(client.socket!, "bad-frame", `snapshot ${frame.seq} has ${round.parts.length} parts, not ${frame.parts}`);
    round.parts[frame.part] = frame.data;
    if (round.parts.some((part) => part === undefined)) return;
    const lastPosts = Object.fromEntries([...this.clients.values()].map((known) => [known.id, known.lastPost]));
    this.store.storeSnapshot({ seq: round.seq, parts: round.parts as string[], lastPosts });
    this.round = undefined;
    this.broadcast(encodeSnapshotNotice("snapshot-stored", frame.seq));
    this.snapshotIfDue();
  }

  /** A client that went away is no longer waited for in the snapshot round. */
  private leaveRound(id: string): void {
    const round = this.round;
    if (round === undefined) return;
    if (round.candidates === undefined) {
      round.voters = round.voters.filter((voter) => voter !== id || round.hashes.has(voter));
      if (round.voters.every((voter) => round.hashes.has(voter))) this.countRound();
    } else if (round.uploader === id) {
      this.requestUpload(id);
    }
  }

  /** Stamps, stores and returns the encoded event. */
  private record(event: { type: "message"; client: string; id: number; payload: string } | { type: "user-enter" | "user-exit"; client: string }): string {
    this.time = stampTime(this.options.clock(), this.time);
    const seq = this.store.lastSeq + 1;
    // Built field by field so that every event's keys come in the documented order.
    const stamped: ReflectedEvent =
      event.type === "message"
        ? { type: "message", seq, time: this.time, client: event.client, id: event.id, payload: event.payload }
        : { type: event.type, seq, time: this.time, client: event.client };
    const text = this.store.append(stamped);
    if (this.options.writeInterval === 0) this.store.flushEvents();
    else if (this.store.unwrittenEvents === 1) this.writeDueAt = this.options.clock() + this.options.writeInterval;
    return text;
  }

  /** Our own loop: one closing socket must not stop the others from receiving (PartyKit's broadcast throws halfway). */
  private broadcast(text: string): void {
    this.lastSentAt = this.options.clock();
    for (let index = 0; index < this.present.length; index++) trySend(this.present[index]!, text);
  }
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

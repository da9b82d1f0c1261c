/**
 * A client's connection to a session: it joins the reflector's room with partysocket, proves it holds the room's
 * key, builds a replica from the welcome (a snapshot and the events after it), applies reflected events in sequence
 * order and hands model-to-view notifications to the view after each batch. The view talks to the model only through
 * `publish`, which goes through the reflector exactly once, however often the connection drops.
 *
 * Every payload and snapshot is sealed end to end with the room's key, bound to its place (see `room-key.ts`); the
 * reflector relays ciphertext only. The same class runs in the browser and, given a WebSocket implementation such as
 * `ws`, headless in Node.
 */
import { PartySocket } from "partysocket";
import { sha256Hex } from "../common/crypto.js";
import { firstAllowance, TokenBucket } from "../common/token-bucket.js";
import {
  CLOSE_BAD_ROOM,
  CLOSE_NOT_MEMBER,
  encodeClientFrame,
  helloChallenge,
  majority,
  parseServerFrames,
  PING,
  PROTOCOL_VERSION,
  splitSnapshot,
  ticketText,
  type ClientFrame,
  type ServerFrame,
  type Vote,
  type Welcome,
} from "../common/protocol.js";
import { isRoomSecret, RoomKey, SealError } from "./room-key.js";
import { encodeModelEvent, Replica, topicKey, type Model, type ModelClass, type ViewEvent } from "./runtime.js";

export type SessionStatus = "connecting" | "connected" | "reconnecting" | "offline";

export interface SessionOptions {
  /** The reflector's `host[:port]`. */
  host: string;
  room: string;
  /**
   * The room's secret (base64url, at least 128 bits), from the join link's `#key=`. Without one the key is derived
   * from the room name: encrypted, but readable by anyone who knows the name.
   */
  key?: string;
  /** The PartyKit party; defaults to `main`. */
  party?: string;
  /** The root model class; every client of a room must use the same one. */
  model: ModelClass;
  /** Options for the root model's `init`; every client of a room must pass the same. */
  modelOptions?: unknown;
  /** `ws` or `wss`; by default partysocket picks `ws` for loopback and private addresses. */
  protocol?: "ws" | "wss";
  /** A WebSocket implementation for Node, where there is no global one. */
  WebSocket?: unknown;
}

/** An event this client published that the reflector has not yet put in the order. */
export interface PendingEvent {
  /** Numbers this client's posts; the reflector sequences each id once, so a resend cannot duplicate it. */
  id: number;
  scope: string;
  event: string;
  data: unknown;
}

/** What the reflector reported when replicas' state hashes differed at a snapshot point. */
export interface Divergence {
  seq: number;
  votes: Vote[];
  /** This replica's hash at `seq`, when it had one. */
  ownHash: string | undefined;
  /** True when this replica is not among the majority (or there is none). */
  outvoted: boolean;
}

type ViewHandler = (data: unknown) => void;

/** Frames a client leaves to the reflector's rate limit for its hello, hashes and leave, beyond its posts. */
const RATE_RESERVE = 5;
/** How long to wait before sending again after the reflector refused a post. */
const RESEND_DELAY = 1000;
/**
 * How long beyond the reflector's write interval (the welcome's `writeInterval`) a post stays resendable after it was
 * ordered. The reflector writes events to storage that long after it orders them; if it dies before, the room comes
 * back without the post, and the next welcome's `acked` says so.
 */
const UNSTORED_MARGIN = 4000;
/** A heartbeat left unanswered this long means the connection is dead, whatever the socket says. */
const PONG_TIMEOUT = 10_000;

/** A pending event with its payload, and the payload sealed for the client and post id it last went out as. */
interface Outgoing extends PendingEvent {
  plain: string;
  sealed?: { client: string; id: number; text: string };
}

/** A replica being brought up to date after a welcome; it becomes the session's replica once it reaches `last`. */
interface CatchUp {
  welcome: Welcome;
  replica: Replica | undefined;
  parts: string[];
}

/**
 * Events: `status` (the status changed), `welcome` (a replica is ready after a (re)connection: re-render
 * everything), `update` (a batch of events was applied), `pending` (the list of unsent posts changed),
 * `divergence` (replicas disagreed; see `divergence`), `bad-snapshot` (the room's snapshot does not check out: the
 * session has left; see `badSnapshot`), `reflector-error` (the reflector refused a frame; `detail` has code and
 * message).
 */
export class Session extends EventTarget {
  status: SessionStatus = "connecting";
  /** This client's id, given by the reflector; it survives reconnections within the grace period. */
  clientId: string | undefined;
  replica: Replica | undefined;
  /** Set when the reflector reported that replicas disagree. */
  divergence: Divergence | undefined;
  /** True once the room's snapshot did not hash to what its members voted, or did not open; the session has then left. */
  badSnapshot = false;
  /**
   * True when this client's own entry was the room's first event: nobody had used the room at this address, which
   * is the room's name and its key. A link with a mistyped key leads to such a room of its own.
   */
  newRoom = false;

  #socket: PartySocket | undefined;
  readonly #viewHandlers = new Map<string, Set<ViewHandler>>();
  readonly #ready: Promise<void>;
  #secret: string | undefined;
  /** True once the current socket's welcome is applied: only then may posts go out on it. */
  #welcomed = false;
  #catchUp: CatchUp | undefined;
  #outbox: Outgoing[] = [];
  /** Posts ordered in the last `#unstored` ms, with when: the room may not have stored them yet. */
  #ordered: { post: Outgoing; at: number }[] = [];
  #nextPostId = 1;
  /** Highest post id sent on the current connection: posts above it go out as the rate limit allows. */
  #sentUpTo = 0;
  /** This client's copy of the reflector's limits on its posts (its frame rate and its share of the room's), a little below them. */
  #bucket: TokenBucket | undefined;
  /** The limits as last told: the welcome's `rate`, and its `budget` or the latest `budget` frame. */
  #rate: Welcome["rate"] = null;
  #budget: Welcome["budget"] = null;
  /** How long a post stays resendable after it was ordered: the reflector's write interval and a margin. */
  #unstored = UNSTORED_MARGIN;
  /** When the current connection's welcome arrived, by `performance.now()`: frames say how long after it they were sent. */
  #welcomedAt: number | undefined;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** The state at the last snapshot point, sealed, kept until the reflector stores a snapshot or asks for this one. */
  #kept: { seq: number; sealed?: string; hash?: string } | undefined;
  #lastHeard = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  /** The replicated time this connection last asked the reflector to tick at. */
  #tickAsked: number | undefined;
  /** How far the server's clock is ahead of this device's, as a stale-ticket refusal told: tickets use the server's. */
  #serverClockOffset = 0;
  #removeOnlineListeners = () => {};
  #left = false;
  readonly #roomKey: Promise<RoomKey>;
  /**
   * Socket events are handled one after the other, each to its end: decryption is asynchronous, and events
   * must still reach the replica in order.
   */
  #queue: Promise<void> = Promise.resolve();

  readonly #options: SessionOptions;

  constructor(options: SessionOptions) {
    super();
    this.#options = options;
    if (options.key !== undefined && !isRoomSecret(options.key)) {
      throw new Error("multiuser-chat: the room key must be base64url text of at least 128 bits (22 characters or more)");
    }
    this.#roomKey = RoomKey.derive(options.room, options.key);
    this.#ready = new Promise((resolve, reject) => {
      this.addEventListener("welcome", () => resolve(), { once: true });
      this.addEventListener("bad-snapshot", () => reject(new Error(`multiuser-chat: the snapshot of room ${options.room} does not check out`)), { once: true });
    });
    // Only a caller of whenReady needs to hear of the rejection; the session reports it as an event too.
    this.#ready.catch(() => {});
    // The room's address names its key, so the socket can open only once the key is derived.
    this.#enqueue(async () => this.#connect(await this.#roomKey));
    this.#watchOnline();
  }

  #connect(key: RoomKey): void {
    if (this.#left) return;
    const options = this.#options;
    const socket = new PartySocket({
      host: options.host,
      room: key.address,
      party: options.party,
      protocol: options.protocol,
      // The ticket the server checks at the door, made afresh for every attempt (see party/ticket.ts).
      query: async () => {
        const at = Math.round(Date.now() + this.#serverClockOffset);
        return { key: key.publicKey, at: String(at), ticket: await key.prove(ticketText(key.address, at)) };
      },
      // Come back well within the reflector's grace period, and keep trying at a modest pace when it is down.
      minReconnectionDelay: 250,
      maxReconnectionDelay: 4000,
      minUptime: 2000,
      // Never queue a frame for a later connection: partysocket would send it there before our hello, and the
      // reflector refuses it (out-of-turn). Everything a connection needs is resent after its welcome.
      maxEnqueuedMessages: 0,
      ...(options.WebSocket === undefined ? {} : { WebSocket: options.WebSocket }),
    });
    this.#socket = socket;
    socket.addEventListener("message", (event) => {
      this.#lastHeard = Date.now();
      const data = String((event as MessageEvent).data);
      this.#enqueue(() => this.#receive(data));
    });
    socket.addEventListener("close", (event) =>
      this.#enqueue(() => {
        this.#welcomed = false;
        this.#welcomedAt = undefined;
        this.#catchUp = undefined;
        this.#stopHeartbeat();
        // Trying again cannot help: the room's name is not one, or this client cannot prove it holds the key.
        const code = (event as CloseEvent).code;
        if (code === CLOSE_BAD_ROOM || code === CLOSE_NOT_MEMBER) this.leave();
        if (!this.#left) this.#setStatus(this.#disconnectedStatus());
      }),
    );
  }

  /** Joins a room; `await session.whenReady()` for the first welcome. */
  static join(options: SessionOptions): Session {
    return new Session(options);
  }

  /** Resolves once the first welcome has been applied; rejects if the key turns out not to match the room. */
  whenReady(): Promise<void> {
    return this.#ready;
  }

  /** The root model, read-only for views: change it only by publishing. */
  get model(): Model | undefined {
    return this.replica?.root;
  }

  /** Events published by this client that are not yet in the order, oldest first. */
  get pending(): readonly PendingEvent[] {
    return this.#outbox.map(({ id, scope, event, data }) => ({ id, scope, event, data }));
  }

  /**
   * Sends an event to the models of every replica, this one included, through the reflector. While disconnected
   * it waits in `pending` and goes out on reconnection; either way it reaches the order exactly once.
   */
  publish(scope: string, event: string, data?: unknown): void {
    if (this.#left) return;
    const pending: Outgoing = { id: this.#nextPostId++, scope, event, data: data ?? null, plain: encodeModelEvent(scope, event, data) };
    this.#outbox.push(pending);
    if (this.#welcomed) this.#enqueue(() => this.#flush());
    this.dispatchEvent(new Event("pending"));
  }

  /** Calls `handler(data)` for each model-to-view event in `scope`/`event`. Returns a function that unsubscribes. */
  subscribe(scope: string, event: string, handler: ViewHandler): () => void {
    const key = topicKey(scope, event);
    const handlers = this.#viewHandlers.get(key) ?? new Set();
    handlers.add(handler);
    this.#viewHandlers.set(key, handlers);
    return () => handlers.delete(handler);
  }

  /** Leaves the room for good: the others see this client leave at once, without waiting for a grace period. */
  leave(): void {
    if (this.#left) return;
    this.#left = true;
    if (this.#welcomed) this.#send({ type: "leave" });
    this.#stopHeartbeat();
    clearTimeout(this.#flushTimer);
    this.#removeOnlineListeners();
    this.#socket?.close();
  }

  /**
   * Sends a frame, stamped with when it was sent since the welcome (`t`): the reflector counts its limits from that,
   * so frames that wait while it is busy are not held against this client. The heartbeat goes as its exact text.
   */
  #send(frame: ClientFrame | typeof PING): void {
    if (typeof frame === "string") return void this.#socket?.send(frame);
    const t = this.#welcomedAt === undefined ? undefined : Math.max(0, Math.round(performance.now() - this.#welcomedAt));
    this.#socket?.send(encodeClientFrame(t === undefined ? frame : { ...frame, t }));
  }

  /** Answers the connection's challenge: a hello that proves this client holds the room's key. */
  async #hello(nonce: string): Promise<void> {
    const key = await this.#roomKey;
    const proof = await key.prove(helloChallenge(key.address, nonce));
    const resume = this.clientId !== undefined && this.#secret !== undefined ? { client: this.clientId, secret: this.#secret, seq: this.replica?.seq ?? 0 } : undefined;
    this.#send({ type: "hello", version: PROTOCOL_VERSION, key: key.publicKey, proof, ...(resume === undefined ? {} : { resume }) });
  }

  #enqueue(task: () => void | Promise<void>): void {
    this.#queue = this.#queue.then(task).catch((error: unknown) => console.error("multiuser-chat: handling a frame failed", error));
  }

  /**
   * Sends the pending posts not yet sent on this connection, in order and within the rate limit; the rest go out
   * when the limit allows.
   */
  async #flush(): Promise<void> {
    for (const pending of this.#outbox) {
      if (!this.#welcomed) return;
      if (pending.id <= this.#sentUpTo) continue;
      const now = Date.now();
      if (this.#bucket !== undefined && !this.#bucket.take(now)) return this.#flushLater(this.#bucket.waitTime(now));
      const payload = await this.#sealed(pending);
      if (!this.#welcomed) return;
      this.#send({ type: "publish", id: pending.id, payload });
      this.#sentUpTo = pending.id;
    }
  }

  /** A post's payload sealed for the client and post id it goes out as; resent as it is while they stay the same. */
  async #sealed(pending: Outgoing): Promise<string> {
    const client = this.clientId!;
    if (pending.sealed?.client !== client || pending.sealed.id !== pending.id) {
      pending.sealed = { client, id: pending.id, text: await (await this.#roomKey).sealPost(pending.plain, client, pending.id) };
    }
    return pending.sealed.text;
  }

  #flushLater(delay: number): void {
    if (this.#flushTimer !== undefined) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.#enqueue(() => this.#flush());
    }, delay);
  }

  /** A frame, or a batch of them, from the reflector: handled in order, then the view hears of the changes once. */
  async #receive(data: string): Promise<void> {
    if (this.#left) return;
    let frames: ServerFrame[];
    try {
      frames = parseServerFrames(data);
    } catch (error) {
      console.error("multiuser-chat: cannot read a frame from the reflector", error);
      return;
    }
    for (const frame of frames) await this.#handle(frame);
    if (this.#catchUp !== undefined || this.#left) return;
    this.#deliverToView(this.replica?.takeViewEvents() ?? []);
    this.#askForTick();
  }

  async #handle(received: ServerFrame): Promise<void> {
    // Read this far: the reflector counts what this connection may hold unread from the last mark acknowledged.
    if (received.type === "mark") return this.#send({ type: "ack", mark: received.id });
    if (this.#catchUp !== undefined) return this.#continueCatchUp(this.#catchUp, received);
    const frame = received.type === "message" ? await this.#open(received) : received;
    switch (frame.type) {
      case "challenge":
        return this.#hello(frame.nonce);
      case "welcome":
        return this.#startCatchUp(frame);
      case "tick":
        this.replica?.advanceTo(frame.time);
        // The reflector keeps only the earliest request, so this tick may be someone else's: ask again for ours.
        this.#tickAsked = undefined;
        return;
      case "pong":
        return;
      case "budget":
        this.#budget = { perSecond: frame.perSecond, burst: frame.burst };
        return this.#pace();
      case "message":
      case "user-enter":
      case "user-exit":
        this.replica?.apply(frame);
        if (frame.type === "message" && frame.client === this.clientId) this.#acknowledge(frame.id);
        return;
      case "snapshot-due":
        return this.#hashState(frame.seq);
      case "snapshot-request":
        return this.#uploadSnapshot(frame.seq);
      case "snapshot-stored":
        if (this.#kept !== undefined && this.#kept.seq <= frame.seq) this.#kept = undefined;
        return;
      case "divergence":
        return this.#reportDivergence(frame.seq, frame.voters, frame.votes);
      case "error":
        console.warn(`multiuser-chat: the reflector refused a frame (${frame.code}): ${frame.message}`);
        if (["rate-limited", "out-of-order", "over-budget", "log-full"].includes(frame.code)) {
          // A post was not taken: when the reflector says it would be (or after a pause), send every pending post
          // again, in order; the ones it already has are dropped as duplicates.
          this.#sentUpTo = 0;
          this.#flushLater(frame.retry ?? RESEND_DELAY);
        } else if (frame.code === "stale-ticket" && frame.time !== undefined) {
          // This device's clock is off: tickets go by the server's from now on. The socket closes, and partysocket
          // reconnects with a new ticket.
          this.#serverClockOffset = frame.time - Date.now();
        } else if (frame.code === "identity") {
          // The reflector does not take these credentials: join as a new client, on a new connection.
          this.clientId = undefined;
          this.#secret = undefined;
          this.#socket?.reconnect();
        }
        this.dispatchEvent(new CustomEvent("reflector-error", { detail: { code: frame.code, message: frame.message } }));
        return;
      default:
        console.warn("multiuser-chat: ignoring a frame of unknown type from the reflector", frame);
        return;
    }
  }

  /**
   * Replicated time moves only with events and ticks, and a quiet room has neither. When the models have work due
   * later (a pending `future`), ask the reflector to tick then. Every replica computes the same time and asks; the
   * reflector keeps the earliest request, and an event that comes first makes the tick unnecessary.
   */
  #askForTick(): void {
    const due = this.replica?.nextFutureTime;
    if (!this.#welcomed || due === undefined || due <= this.replica!.time || due === this.#tickAsked) return;
    this.#tickAsked = due;
    this.#send({ type: "tick-request", time: due });
  }

  /**
   * A welcome: the posts the reflector already has leave the outbox, and a replica is brought up to date from
   * the snapshot that follows, from nothing, or (when resumed) from this session's own replica.
   */
  async #startCatchUp(welcome: Welcome): Promise<void> {
    this.#welcomedAt = performance.now();
    // Ordered posts the room lost in a crash go out again, ahead of the newer ones. Only a room that knows this
    // client can say which it lost: a welcome that neither resumes it nor acknowledges anything cannot.
    const lost = welcome.resumed || welcome.acked > 0 ? this.#ordered.map(({ post }) => post) : [];
    this.#outbox = [...lost, ...this.#outbox].filter((pending) => pending.id > welcome.acked);
    this.#ordered = [];
    if (!welcome.resumed) {
      // A new client id numbers its posts afresh.
      this.#outbox = this.#outbox.map((pending, index) => ({ ...pending, id: index + 1 }));
      this.#nextPostId = this.#outbox.length + 1;
      this.#kept = undefined;
    }
    this.clientId = welcome.client;
    this.#secret = welcome.secret;
    if (!welcome.resumed) this.newRoom = welcome.from === 0 && welcome.last === 1;
    let replica: Replica | undefined;
    if (welcome.snapshot === null) {
      const { room, model, modelOptions } = this.#options;
      replica = welcome.resumed && welcome.from > 0 ? this.replica : Replica.create(room, (await this.#roomKey).seed, model, modelOptions);
    }
    this.#catchUp = { welcome, replica, parts: [] };
    await this.#continueCatchUp(this.#catchUp, undefined);
  }

  async #continueCatchUp(catchUp: CatchUp, frame: ServerFrame | undefined): Promise<void> {
    const { welcome } = catchUp;
    if (frame?.type === "snapshot") {
      catchUp.parts.push(frame.data);
      if (catchUp.parts.length === welcome.snapshot?.parts) {
        catchUp.replica = await this.#restoreSnapshot(catchUp.parts.join(""), welcome.snapshot);
        if (catchUp.replica === undefined) return;
      }
    } else if (frame?.type === "message" || frame?.type === "user-enter" || frame?.type === "user-exit") {
      catchUp.replica!.apply(frame.type === "message" ? await this.#open(frame) : frame);
      if (frame.type === "message" && frame.client === welcome.client) this.#acknowledge(frame.id);
    } else if (frame !== undefined) {
      console.warn(`multiuser-chat: a ${frame.type} frame arrived before the welcome's events; ignoring it`);
    }
    const replica = catchUp.replica;
    if (replica === undefined || replica.seq < welcome.last) return;
    replica.advanceTo(welcome.time);
    // Notifications from catching up describe the past; the view renders the whole state instead.
    replica.takeViewEvents();
    this.replica = replica;
    this.#catchUp = undefined;
    this.#welcomed = true;
    this.#sentUpTo = 0;
    this.#rate = welcome.rate;
    this.#budget = welcome.budget;
    this.#unstored = welcome.writeInterval + UNSTORED_MARGIN;
    // A new client's share at the reflector starts with half a second's worth, not a burst: so does its copy here.
    if (!welcome.resumed) this.#bucket = undefined;
    this.#pace();
    await this.#flush();
    this.#startHeartbeat(welcome.heartbeat);
    this.#tickAsked = undefined;
    this.#askForTick();
    this.#setStatus("connected");
    this.dispatchEvent(new Event("pending"));
    this.dispatchEvent(new Event("welcome"));
  }

  /**
   * Paces posts a little below the tighter of the connection's rate limit and this client's share of the room's
   * posts, leaving room in the rate for hashes, acknowledgements and the rest.
   */
  #pace(): void {
    const limits = [this.#rate, this.#budget].filter((limit) => limit !== null);
    if (limits.length === 0) return void (this.#bucket = undefined);
    const perSecond = Math.min(...limits.map((limit) => limit.perSecond)) * 0.9;
    const burst = Math.max(1, Math.min(this.#rate === null ? Infinity : this.#rate.burst - RATE_RESERVE, this.#budget?.burst ?? Infinity));
    if (this.#bucket === undefined) this.#bucket = new TokenBucket(perSecond, burst, Date.now(), firstAllowance({ perSecond, burst }));
    else this.#bucket.retune(perSecond, burst, Date.now());
  }

  /**
   * Own posts up to `id` are in the order now. Both lists are in order (the outbox by id, `ordered` by time), so
   * only their heads change: a client posting thousands a second must not scan either list per acknowledgement.
   */
  #acknowledge(id: number): void {
    const now = Date.now();
    // Only pruned while connected: a post ordered just before the connection dropped stays until the next welcome.
    const expired = this.#ordered.findIndex(({ at }) => now - at < this.#unstored);
    this.#ordered.splice(0, expired === -1 ? this.#ordered.length : expired);
    let done = 0;
    while (done < this.#outbox.length && this.#outbox[done]!.id <= id) this.#ordered.push({ post: this.#outbox[done++]!, at: now });
    if (done === 0) return;
    this.#outbox.splice(0, done);
    this.dispatchEvent(new Event("pending"));
  }

  /**
   * A snapshot point: seal the state exactly as it is after event `seq` and vote with the hash of the sealed text.
   * Sealing is deterministic, so every replica with the same state votes the same hash, and the reflector stores an
   * upload only if it hashes to the majority's vote; without the key, nobody can turn a guess into a hash.
   */
  #hashState(seq: number): void {
    const replica = this.replica;
    if (replica === undefined || replica.seq !== seq) {
      console.warn(`multiuser-chat: a snapshot is due at ${seq} but this replica is at ${replica?.seq}`);
      return;
    }
    const text = replica.serialize();
    const kept: { seq: number; sealed?: string; hash?: string } = { seq };
    this.#kept = kept;
    void (async () => {
      kept.sealed = await (await this.#roomKey).sealSnapshot(text, seq);
      kept.hash = await sha256Hex(kept.sealed);
      if (this.#welcomed && this.#kept === kept) this.#send({ type: "hash", seq, hash: kept.hash });
    })();
  }

  #uploadSnapshot(seq: number): void {
    const kept = this.#kept;
    if (kept?.seq !== seq || kept.sealed === undefined) return;
    const parts = splitSnapshot(kept.sealed);
    parts.forEach((data, part) => this.#send({ type: "snapshot", seq, part, parts: parts.length, data }));
  }

  /**
   * A message's payload, opened where the reflector put it: sent by `client` as its post `id`. One that does not open
   * there (another key, another sender's or another post's payload replayed, garbage) reaches no model: it becomes
   * a payload every replica skips alike.
   */
  async #open(event: Extract<ServerFrame, { type: "message" }>): Promise<Extract<ServerFrame, { type: "message" }>> {
    try {
      return { ...event, payload: await (await this.#roomKey).openPost(event.payload, event.client, event.id) };
    } catch (error) {
      if (!(error instanceof SealError)) throw error;
      return { ...event, payload: "" };
    }
  }

  /**
   * The replica the snapshot holds, or undefined when it does not check out: its parts must hash to what the
   * majority voted, open as every honest replica seals that state, and restore. Such a snapshot is reported and the
   * session leaves. The reflector stores only uploads that hash to the vote, so it takes a faulty reflector, or
   * members that hold the majority of a round's votes, to send one.
   */
  async #restoreSnapshot(sealed: string, snapshot: { seq: number; hash: string }): Promise<Replica | undefined> {
    try {
      if ((await sha256Hex(sealed)) !== snapshot.hash) throw new SealError("snapshot");
      return Replica.restore(await (await this.#roomKey).openSnapshot(sealed, snapshot.seq));
    } catch (error) {
      // Whatever went wrong, it went wrong with this snapshot: a session that cannot use it must not hang on it.
      this.badSnapshot = true;
      console.error(`multiuser-chat: the snapshot of room ${this.#options.room} at ${snapshot.seq} does not check out (${String(error)}); leaving the room`);
      this.dispatchEvent(new Event("bad-snapshot"));
      this.leave();
      return undefined;
    }
  }

  #reportDivergence(seq: number, voters: number, votes: Vote[]): void {
    const ownHash = this.#kept?.seq === seq ? this.#kept.hash : undefined;
    const outvoted = ownHash === undefined || majority(votes, voters)?.hash !== ownHash;
    this.divergence = { seq, votes, ownHash, outvoted };
    console.error(
      `multiuser-chat: replicas of room ${this.#options.room} hold different states after event ${seq}. ` +
        `This replica's hash is ${ownHash ?? "unknown"}; ${outvoted ? "it is not the majority's" : "it is the majority's"}. ` +
        "A model is not deterministic: look for Math.random, Date.now, timers or unordered iteration in model code.",
      votes,
    );
    this.dispatchEvent(new Event("divergence"));
  }

  #deliverToView(events: ViewEvent[]): void {
    for (const { scope, event, data } of events) {
      for (const handler of this.#viewHandlers.get(topicKey(scope, event)) ?? []) handler(data);
    }
    if (events.length > 0) this.dispatchEvent(new Event("update"));
  }

  /**
   * A quiet room sends nothing, so the client asks: a heartbeat every `interval`, which the reflector's platform
   * answers without waking the room. A connection that leaves one unanswered for PONG_TIMEOUT is dead even if no
   * close arrived, and the client reconnects.
   */
  #startHeartbeat(interval: number): void {
    this.#stopHeartbeat();
    this.#heartbeat = setInterval(() => {
      const sent = Date.now();
      this.#send(PING);
      clearTimeout(this.#pongTimer);
      this.#pongTimer = setTimeout(() => {
        if (this.#lastHeard < sent) this.#socket?.reconnect();
      }, PONG_TIMEOUT);
    }, interval);
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    clearTimeout(this.#pongTimer);
    this.#heartbeat = undefined;
  }

  #setStatus(status: SessionStatus): void {
    if (status === this.status) return;
    this.status = status;
    this.dispatchEvent(new Event("status"));
  }

  /** The status while the socket is not open. */
  #disconnectedStatus(): SessionStatus {
    if (isOffline()) return "offline";
    return this.clientId === undefined ? "connecting" : "reconnecting";
  }

  /**
   * In a browser, the status says offline as soon as the network is gone (the socket may take a while to notice),
   * and the session reconnects at once when it is back instead of trusting a socket that lived through the outage.
   */
  #watchOnline(): void {
    if (typeof window === "undefined") return;
    const offline = () => this.#setStatus("offline");
    const online = () => {
      this.#setStatus(this.#disconnectedStatus());
      this.#socket?.reconnect();
    };
    // A closed tab says goodbye at once instead of leaving the others to wait out its grace period.
    const pagehide = (event: PageTransitionEvent) => {
      if (!event.persisted) this.leave();
    };
    window.addEventListener("offline", offline);
    window.addEventListener("online", online);
    window.addEventListener("pagehide", pagehide);
    this.#removeOnlineListeners = () => {
      window.removeEventListener("offline", offline);
      window.removeEventListener("online", online);
      window.removeEventListener("pagehide", pagehide);
    };
  }
}

function isOffline(): boolean {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}

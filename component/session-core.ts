/**
 * A client's session without I/O: frames from the reflector in, frames to it out, notifications to the view out, the
 * clock and a timer passed in. It proves membership, builds a replica from the welcome, applies reflected events in
 * order, keeps the outbox of posts, takes part in snapshot rounds and reads the reflector's refusals. `Session` runs
 * it over partysocket, as party/server.ts runs the reflector; test/node/session-core.test.ts drives it frame by frame.
 */
import {
  encodeClientFrame,
  helloChallenge,
  parseServerFrames,
  PROTOCOL_VERSION,
  type ClientFrame,
  type ServerFrame,
  type Welcome,
} from "../common/protocol.js";
import { CatchUp, type CatchUpState } from "./catch-up.js";
import { Outbox, type Outgoing, type PendingEvent } from "./outbox.js";
import { SealError, type RoomKey } from "./room-key.js";
import { Replica, type ModelClass, type ViewEvent } from "./runtime.js";
import { SnapshotDuty, type Divergence } from "./snapshot-duty.js";

/** What the core tells its owner: the replica is ready, events were applied, the outbox changed, and the rest. */
export type CoreNotice =
  | { type: "welcome" }
  | { type: "update"; events: ViewEvent[] }
  | { type: "pending" }
  | { type: "divergence" }
  | { type: "bad-snapshot" }
  /** `time` is the server's clock, in a `stale-ticket` refusal. */
  | { type: "reflector-error"; code: string; message: string; time?: number };

export interface SessionCoreOptions {
  room: string;
  /** The room's keys, once derived: posts may be published before. */
  key: Promise<RoomKey>;
  model: ModelClass;
  modelOptions?: unknown;
  /** Milliseconds, never going back: pacing, the time frames say they were sent, how long posts stay resendable. */
  clock(): number;
  /** Runs `callback` in `ms` milliseconds. */
  setTimer(ms: number, callback: () => void): void;
  /** Sends a frame's text on the current connection. */
  send(text: string): void;
  /** What a new client tells the others of itself in its hello, as model data (JSON text); sealed before it goes. */
  profile?: () => string | undefined;
  notify(notice: CoreNotice): void;
}

/** A client's id and the secret that proves it, as a welcome gives them. */
export interface Identity {
  client: string;
  secret: string;
}

/** How long to wait before sending again after the reflector refused a post without saying when. */
const RESEND_DELAY = 1000;
/** Refusals after which pending posts go out again: the post was not taken, and would be later. */
const RESEND_CODES = new Set(["rate-limited", "out-of-order", "over-budget", "log-full"]);

export class SessionCore {
  #clientId: string | undefined;
  #secret: string | undefined;
  #replica: Replica | undefined;
  #divergence: Divergence | undefined;
  #badSnapshot = false;
  #newRoom = false;
  /** The welcome of the current connection, once its catch-up is done: only then may posts go out on it. */
  #welcome: Welcome | undefined;
  #welcomedAt = 0;
  #catchUp: CatchUp | undefined;
  readonly #outbox = new Outbox();
  /** Made at the first welcome, when the key is there. */
  #snapshots: SnapshotDuty | undefined;
  #flushScheduled = false;
  /** The replicated time this connection last asked the reflector to tick at. */
  #tickAsked: number | undefined;
  #left = false;
  /**
   * Frames are handled one after the other, each to its end: opening payloads is asynchronous, and events must still
   * reach the replica in order.
   */
  #queue: Promise<void> = Promise.resolve();

  readonly #options: SessionCoreOptions;

  constructor(options: SessionCoreOptions) {
    this.#options = options;
  }

  get clientId(): string | undefined {
    return this.#clientId;
  }
  get replica(): Replica | undefined {
    return this.#replica;
  }
  get divergence(): Divergence | undefined {
    return this.#divergence;
  }
  get badSnapshot(): boolean {
    return this.#badSnapshot;
  }
  get newRoom(): boolean {
    return this.#newRoom;
  }
  get pending(): readonly PendingEvent[] {
    return this.#outbox.pending;
  }
  /** The current connection's welcome, once its replica is caught up. */
  get welcome(): Welcome | undefined {
    return this.#welcome;
  }
  get left(): boolean {
    return this.#left;
  }
  /** This client's id and secret, with which a reloaded page comes back as the same client. */
  get identity(): Identity | undefined {
    return this.#clientId === undefined || this.#secret === undefined ? undefined : { client: this.#clientId, secret: this.#secret };
  }

  /** Comes back as `identity` at the next hello, as a reloaded page does; before the first welcome only. */
  resumeAs(identity: Identity): void {
    if (this.#replica !== undefined) return;
    this.#clientId = identity.client;
    this.#secret = identity.secret;
  }

  /** Frames from the reflector, as one WebSocket message. Resolves once they are handled. */
  receive(data: string): Promise<void> {
    return this.#enqueue(async () => {
      if (this.#left) return;
      let frames: ServerFrame[];
      try {
        frames = parseServerFrames(data);
      } catch (error) {
        console.error("multiuser-chat: cannot read a frame from the reflector", error);
        return;
      }
      for (const frame of frames) await this.#handle(frame);
      if (this.#catchUp !== undefined || this.#left || this.#replica === undefined) return;
      const events = this.#replica.takeViewEvents();
      if (events.length > 0) this.#options.notify({ type: "update", events });
      this.#askForTick();
    });
  }

  /** The connection closed: nothing more goes out until the next one's welcome. */
  disconnected(): Promise<void> {
    return this.#enqueue(() => {
      this.#welcome = undefined;
      this.#catchUp = undefined;
    });
  }

  /** Queues an event for every replica's models; it reaches the order exactly once, whatever the connection does. */
  publish(scope: string, event: string, data?: unknown): void {
    if (this.#left) return;
    this.#outbox.add(scope, event, data);
    if (this.#welcome !== undefined) void this.#enqueue(() => this.#flush());
    this.#options.notify({ type: "pending" });
  }

  /**
   * Leaves the room: tells the reflector when connected, so the others see it leave at once; or, for a page that may
   * be reloaded, that it may come back as the same client in a moment (`reload`).
   */
  leave({ reload = false } = {}): void {
    if (this.#left) return;
    this.#left = true;
    if (this.#welcome !== undefined) this.#send(reload ? { type: "leave", reload } : { type: "leave" });
  }

  #enqueue(task: () => void | Promise<void>): Promise<void> {
    this.#queue = this.#queue.then(task).catch((error: unknown) => console.error("multiuser-chat: handling a frame failed", error));
    return this.#queue;
  }

  /** Sends a frame stamped with when it was sent since the welcome (`t`): the reflector counts its limits from that. */
  #send(frame: ClientFrame): void {
    const t = this.#welcome === undefined && this.#catchUp === undefined ? undefined : Math.max(0, Math.round(this.#options.clock() - this.#welcomedAt));
    this.#options.send(encodeClientFrame(t === undefined ? frame : { ...frame, t }));
  }

  async #handle(received: ServerFrame): Promise<void> {
    // Read this far: the reflector counts what this connection may hold unread from the last mark acknowledged.
    if (received.type === "mark") return this.#send({ type: "ack", mark: received.id });
    if (this.#catchUp !== undefined) return this.#continueCatchUp(this.#catchUp, received);
    const frame = await this.#opened(received);
    switch (frame.type) {
      case "challenge":
        return this.#hello(frame.nonce);
      case "welcome":
        return this.#startCatchUp(frame);
      case "tick":
        this.#replica?.advanceTo(frame.time);
        // The reflector keeps only the earliest request, so this tick may be someone else's: ask again for ours.
        this.#tickAsked = undefined;
        return;
      case "pong":
        return;
      case "budget":
        return this.#outbox.budgetChanged({ perSecond: frame.perSecond, burst: frame.burst }, this.#options.clock());
      case "message":
      case "user-enter":
      case "user-exit":
        this.#replica?.apply(frame);
        if (frame.type === "message" && frame.client === this.#clientId) this.#acknowledge(frame.id);
        return;
      case "snapshot-due":
        return this.#vote(frame.seq);
      case "snapshot-request":
        for (const part of this.#snapshots?.upload(frame.seq) ?? []) this.#send(part);
        return;
      case "snapshot-stored":
        return this.#snapshots?.stored(frame.seq);
      case "divergence":
        if (this.#snapshots !== undefined) this.#reportDivergence(this.#snapshots.divergence(frame.seq, frame.voters, frame.votes));
        return;
      case "error":
        return this.#refused(frame);
      default:
        console.warn("multiuser-chat: unknown frame", frame);
    }
  }

  /** Answers the connection's challenge: a hello that proves this client holds the room's key. */
  async #hello(nonce: string): Promise<void> {
    const key = await this.#options.key;
    const proof = await key.prove(helloChallenge(key.address, nonce));
    const identity = this.identity;
    const hello: Extract<ClientFrame, { type: "hello" }> = { type: "hello", version: PROTOCOL_VERSION, key: key.publicKey, proof };
    if (identity !== undefined) hello.resume = { ...identity, seq: this.#replica?.seq ?? 0 };
    const profile = this.#options.profile?.();
    // Only a new client's user-enter carries it; a resumed client is already known to the room.
    if (profile !== undefined && identity === undefined) hello.profile = await key.sealProfile(profile);
    this.#send(hello);
  }

  async #startCatchUp(welcome: Welcome): Promise<void> {
    const key = await this.#options.key;
    this.#welcomedAt = this.#options.clock();
    this.#outbox.welcomed(welcome, this.#welcomedAt);
    if (this.#snapshots === undefined || !welcome.resumed) this.#snapshots = new SnapshotDuty(key);
    if (!welcome.resumed) this.#newRoom = welcome.from === 0 && welcome.last === 1;
    this.#clientId = welcome.client;
    this.#secret = welcome.secret;
    const { room, model, modelOptions } = this.#options;
    const start =
      welcome.snapshot !== null ? undefined : welcome.resumed && welcome.from > 0 ? this.#replica : Replica.create(room, key.seed, model, modelOptions);
    const catchUp = new CatchUp(welcome, key, model, start);
    this.#catchUp = catchUp;
    return this.#caughtUp(catchUp, catchUp.state);
  }

  async #continueCatchUp(catchUp: CatchUp, frame: ServerFrame): Promise<void> {
    if (frame.type === "snapshot") return this.#caughtUp(catchUp, await catchUp.part(frame.data));
    // The reflector sends a welcome's catch-up at once, so nothing else comes between; anything that does is ignored.
    if (frame.type !== "message" && frame.type !== "user-enter" && frame.type !== "user-exit") return;
    const event = await this.#opened(frame);
    const state = catchUp.event((replica) => replica.apply(event));
    if (event.type === "message" && event.client === catchUp.welcome.client) this.#acknowledge(event.id);
    return this.#caughtUp(catchUp, state);
  }

  async #caughtUp(catchUp: CatchUp, state: CatchUpState): Promise<void> {
    if ("badSnapshot" in state) return this.#reportBadSnapshot(catchUp.welcome, state.badSnapshot);
    if (!state.done) return;
    const resumed = state.replica === this.#replica;
    this.#replica = state.replica;
    this.#catchUp = undefined;
    this.#welcome = catchUp.welcome;
    await this.#flush();
    this.#tickAsked = undefined;
    this.#askForTick();
    this.#options.notify({ type: "pending" });
    this.#options.notify({ type: "welcome" });
    // The views of a resumed replica show the state it had: what caught it up is news to them. A new replica's
    // notifications describe the past, and its views render the whole state at the welcome.
    if (resumed && state.notifications.length > 0) this.#options.notify({ type: "update", events: state.notifications });
  }

  /**
   * Sends the pending posts not yet sent on this connection, in order and within the limits; the rest go out when
   * the limits allow.
   */
  async #flush(): Promise<void> {
    for (;;) {
      if (this.#welcome === undefined || this.#left) return;
      const next = this.#outbox.next(this.#options.clock());
      if (next === undefined) return;
      if ("wait" in next) return this.#flushLater(next.wait);
      const payload = await this.#sealed(next.post);
      if (this.#welcome === undefined) return;
      this.#send({ type: "publish", id: next.post.id, payload });
      this.#outbox.sent(next.post);
    }
  }

  #flushLater(delay: number): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#options.setTimer(delay, () => {
      this.#flushScheduled = false;
      void this.#enqueue(() => this.#flush());
    });
  }

  /** A post's payload sealed for the client and post id it goes out as; resent as it is while they stay the same. */
  async #sealed(post: Outgoing): Promise<string> {
    const client = this.#clientId!;
    if (post.sealed?.client !== client || post.sealed.id !== post.id) {
      post.sealed = { client, id: post.id, text: await (await this.#options.key).sealPost(post.plain, client, post.id) };
    }
    return post.sealed.text;
  }

  #acknowledge(id: number): void {
    if (this.#outbox.acknowledge(id, this.#options.clock())) this.#options.notify({ type: "pending" });
  }

  /**
   * A frame with what it carries sealed opened. A message's payload is opened where the reflector put it: sent by
   * `client` as its post `id`; one that does not open there (another key, another sender's or another post's payload
   * replayed, garbage) becomes a payload every replica skips alike. A user-enter's profile that does not open is
   * left out, alike everywhere.
   */
  async #opened<F extends ServerFrame>(frame: F): Promise<F> {
    const key = await this.#options.key;
    try {
      if (frame.type === "message") return { ...frame, payload: await key.openPost(frame.payload, frame.client, frame.id) };
      if (frame.type === "user-enter" && frame.profile !== undefined) return { ...frame, profile: await key.openProfile(frame.profile) };
      return frame;
    } catch (error) {
      if (!(error instanceof SealError)) throw error;
      if (frame.type === "message") return { ...frame, payload: "" };
      const { profile: _unopened, ...rest } = frame as Extract<ServerFrame, { type: "user-enter" }>;
      return rest as F;
    }
  }

  #vote(seq: number): void {
    if (this.#replica === undefined || this.#snapshots === undefined) return;
    // Not awaited: the vote goes out when sealed, and later frames need not wait for it.
    void this.#snapshots.vote(seq, this.#replica).then((vote) => {
      if (vote !== undefined && this.#welcome !== undefined) this.#send(vote);
    });
  }

  /**
   * Replicated time moves only with events and ticks, and a quiet room has neither. When the models have work due
   * later (a pending `future`), ask the reflector to tick then. Every replica computes the same time and asks; the
   * reflector keeps the earliest request, and an event that comes first makes the tick unnecessary.
   */
  #askForTick(): void {
    const due = this.#replica?.nextFutureTime;
    if (this.#welcome === undefined || due === undefined || due <= this.#replica!.time || due === this.#tickAsked) return;
    this.#tickAsked = due;
    this.#send({ type: "tick-request", time: due });
  }

  #refused(frame: Extract<ServerFrame, { type: "error" }>): void {
    console.warn(`multiuser-chat: refused (${frame.code}): ${frame.message}`);
    if (RESEND_CODES.has(frame.code)) {
      // A post was not taken: when the reflector says it would be (or after a pause), send every pending post
      // again, in order; the ones it already has are dropped as duplicates. An out-of-order post only follows a
      // refused one, whose wait stands.
      const wait = frame.code === "out-of-order" ? 0 : (frame.retry ?? RESEND_DELAY);
      this.#outbox.refused(this.#options.clock(), wait);
      this.#flushLater(wait);
    } else if (frame.code === "identity") {
      // The reflector does not take these credentials: the next hello joins as a new client.
      this.#clientId = undefined;
      this.#secret = undefined;
    }
    this.#options.notify({ type: "reflector-error", code: frame.code, message: frame.message, time: frame.time });
  }

  #reportDivergence(divergence: Divergence): void {
    this.#divergence = divergence;
    // For the developer: a replica that differs runs a model that is not deterministic (Math.random, Date.now,
    // timers or unordered iteration in model code), or another model.
    console.error(
      `multiuser-chat: replicas hold different states after event ${divergence.seq}; this one is ${divergence.outvoted ? "not " : ""}in the majority`,
      divergence.votes,
    );
    this.#options.notify({ type: "divergence" });
  }

  /** A snapshot that does not check out: reported, and the session leaves, showing nothing of it. */
  #reportBadSnapshot(welcome: Welcome, error: Error): void {
    this.#badSnapshot = true;
    this.#catchUp = undefined;
    this.leave();
    console.error(`multiuser-chat: the snapshot at ${welcome.snapshot?.seq} does not check out (${String(error)}); leaving`);
    this.#options.notify({ type: "bad-snapshot" });
  }
}

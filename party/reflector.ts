import { Admission } from "./admission.js";
import type { Client, Connection } from "./client.js";
import { Connections } from "./connections.js";
import { Delivery, trySend } from "./delivery.js";
import { EventOrder } from "./event-order.js";
import { CLOSE_BEHIND, CLOSE_FLOODING, MAX_FRAME_LENGTH, parseClientFrame, PONG, ProtocolError, type ClientFrame } from "../common/protocol.js";
import type { ClientSocket, ReflectorOptions } from "./platform.js";
import { RoomStore } from "./room-store.js";
import { Roster } from "./roster.js";
import { DEFAULT_SETTINGS, type ReflectorSettings } from "./settings.js";
import { SnapshotRounds } from "./snapshot-round.js";
import { WriteSchedule } from "./write-schedule.js";

export { stampTime } from "./event-order.js";
export type { ClientSocket, ReflectorOptions, SocketState } from "./platform.js";

/** When a room whose log is full asks a poster to try again. */
const LOG_FULL_RETRY = 5000;

/**
 * One room's reflector: gives every event the next sequence number and the server's time, stores it and sends it
 * to every client, the sender included. It decides client ids, emits `user-enter` / `user-exit` into the same
 * order, keeps clients through short disconnections, and collects snapshots. Payloads and snapshots pass through as
 * opaque strings. Its parts, each with what it needs of the room: the order of events (event-order.ts), who is in
 * the room (roster.ts), how a socket joins it (admission.ts), the open sockets (connections.ts), how frames go out
 * (delivery.ts), the snapshot rounds (snapshot-round.ts) and when storage is written (write-schedule.ts).
 *
 * Everything here is synchronous: a sequence number is assigned the moment a frame arrives. Deadlines run on no
 * timer: the platform calls `wake` at `nextWakeAt`, and a room with nothing due needs no JavaScript at all. So that a
 * room may sleep between any two calls, everything it must not forget is in storage (written within
 * `writeInterval`) or in its sockets' `state`, and `open` rebuilds the room from both. The one timer is the
 * delivery's few milliseconds of coalescing, while events come fast.
 */
export class Reflector<Socket extends ClientSocket> {
  private readonly connections: Connections<Socket>;
  private readonly delivery: Delivery<Socket>;
  private readonly rounds: SnapshotRounds;
  private readonly roster: Roster<Socket>;
  private readonly admission: Admission<Socket>;
  private readonly writes: WriteSchedule;
  private readonly order: EventOrder;
  private readonly settings: ReflectorSettings;
  private store: RoomStore;

  private constructor(
    private readonly options: ReflectorOptions<Socket>,
    store: RoomStore,
  ) {
    const settings = { ...DEFAULT_SETTINGS, ...definedOnly(options) };
    settings.maxFrameLength = Math.min(settings.maxFrameLength, MAX_FRAME_LENGTH);
    this.settings = settings;
    this.store = store;
    const now = options.clock();
    this.writes = new WriteSchedule(
      {
        clock: options.clock,
        unwrittenEvents: () => this.store.unwrittenEvents,
        write: (room) => this.store.flush(room ? { ...this.order.saved(), ...this.rounds.record() } : undefined),
      },
      settings.writeInterval,
    );
    this.delivery = new Delivery<Socket>({
      coalesce: settings.coalesce,
      maxLag: settings.maxLag,
      clock: options.clock,
      newToken: options.newToken,
      setTimer: options.setTimer,
      behind: (receiver) => this.fellBehind(receiver as Connection<Socket>),
      flushed: options.changed,
    });
    this.connections = new Connections<Socket>(this.delivery, options, settings, (socket) => this.admission.stopWaiting(socket));
    this.order = new EventOrder(
      {
        clock: options.clock,
        store: () => this.store,
        counted: (length) => this.rounds.counted(length),
        anyonePresent: () => this.delivery.count > 0,
        broadcast: (text) => this.delivery.broadcast(text),
      },
      this.writes,
      store,
    );
    this.roster = new Roster<Socket>(
      {
        store: () => this.store,
        newToken: options.newToken,
        broadcast: (text) => this.delivery.broadcast(text),
      },
      settings,
    );
    this.admission = new Admission<Socket>(
      {
        store: () => this.store,
        time: () => this.order.time,
        logFull: () => this.logFull,
        receive: (socket, data) => this.receive(socket, data),
        enter: (client, profile) => this.order.record({ type: "user-enter", client, profile }),
        joined: () => this.startRoundIfSafe(this.logFull),
      },
      options,
      settings,
      this.roster,
      this.connections,
      this.delivery,
      store.lastSeq,
      now,
    );
    this.rounds = new SnapshotRounds(
      {
        clock: options.clock,
        present: () => this.roster.present(),
        isPresent: (id) => this.roster.isPresent(id),
        send: (id, text) => this.connections.send(this.roster.get(id)!.connection!, text),
        refuse: (id, code, message) => this.connections.refuse(this.roster.get(id)!.connection!, code, message),
        broadcast: (text) => this.delivery.broadcast(text),
        store: ({ seq, parts, hash }) => this.store.storeSnapshot({ seq, parts, hash, lastPosts: this.roster.lastPosts() }),
        digest: options.digest,
        saved: () => this.writes.saveRoom(),
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
    const reflector = new Reflector<Socket>(options, await RoomStore.load(options.storage));
    const now = options.clock();
    reflector.roster.restore(now);
    reflector.admission.takeBack(options.sockets ?? [], now);
    reflector.roster.writeGracePeriods();
    return reflector;
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
    return this.roster.size > this.delivery.count;
  }

  /** True when no client is present or within its grace period: the room is idle. */
  get isEmpty(): boolean {
    return this.roster.size === 0;
  }

  /** Time of the room's last event; undefined while the room has no history. */
  get lastActivity(): number | undefined {
    return this.store.lastSeq === 0 ? undefined : this.store.lastTime;
  }

  /** A socket opened: it gets its challenge (see Admission.connect). */
  connect(socket: Socket): void {
    this.admission.connect(socket);
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
    if (
      uploading &&
      frame !== undefined &&
      !(frame.type === "snapshot" && this.rounds.isUploader(client.id, frame.seq)) &&
      typeof data === "string" &&
      data.length > limit
    ) {
      problem = new ProtocolError("frame-too-large", `frame is ${data.length} characters; the limit is ${limit}`);
    }
    const sentAt = connection.clock.at(now, frame?.t);
    const awaited = frame?.type === "snapshot" && problem === undefined && client !== undefined && this.rounds.awaitsPart(client.id, frame);
    if (!awaited && !connection.limiter.take(sentAt)) return this.rateLimited(connection, sentAt);
    if (problem !== undefined) return this.connections.refuse(connection, problem.code, problem.message);
    if (frame!.client !== undefined && frame!.client !== client?.id) {
      return this.connections.refuse(connection, "identity", `client ${frame!.client} belongs to another connection; the reflector knows who sent this frame`);
    }
    this.handle(connection, frame!, sentAt);
  }

  private handle(connection: Connection<Socket>, frame: ClientFrame, sentAt: number): void {
    // A heartbeat is answered whoever sends it, as the platform answers it when it does so for the room.
    if (frame.type === "ping") return trySend(connection.socket, PONG);
    const client = connection.client;
    if (client === undefined) {
      if (frame.type === "hello") this.admission.hello(connection, frame);
      else this.connections.refuse(connection, "out-of-turn", `send hello before ${frame.type}`);
      return;
    }
    switch (frame.type) {
      case "hello":
        return this.connections.refuse(connection, "out-of-turn", "this connection has already said hello");
      case "publish":
        return this.post(client, frame.id, frame.payload, sentAt);
      case "hash":
        return this.rounds.vote(client.id, frame.seq, frame.hash);
      case "snapshot":
        return this.rounds.upload(client.id, frame);
      case "tick-request":
        return this.order.requestTick(frame.time);
      case "ack":
        return this.delivery.acknowledge(connection, frame.mark);
      case "leave":
        this.connections.forget(connection);
        // A page being reloaded comes back in a moment, as the same client: a short grace period, and no notices.
        if (frame.reload === true) return this.goAway(client, this.options.clock(), this.settings.reloadGrace);
        // A deliberate goodbye needs no grace period.
        return this.leaveNow(client, this.options.clock());
    }
  }

  /** A socket closed or failed: its client is away until it resumes or its grace period ends. */
  disconnect(socket: Socket): void {
    const connection = this.connections.get(socket);
    if (connection === undefined) return;
    const client = connection.client;
    this.connections.forget(connection);
    if (client !== undefined && client.connection === connection) this.goAway(client, this.options.clock());
  }

  /**
   * When `wake` next has something to do, in the clock's milliseconds, or undefined when nothing is pending: the
   * earliest of the storage flush, hello timeouts, grace periods, the snapshot round, a requested tick, the silence
   * check and, for an empty room, retention. The adapter asks after every frame, so it builds nothing and walks the
   * clients only while some are away.
   */
  nextWakeAt(): number | undefined {
    let due = this.writes.due;
    if (this.anyAway) due = Math.min(due, this.roster.firstGraceEnd());
    const deadline = this.rounds.deadline;
    if (deadline !== undefined && deadline < due) due = deadline;
    due = Math.min(due, this.admission.helloDeadline);
    if (this.delivery.count > 0) {
      const tickAt = this.order.tickDue;
      if (tickAt !== undefined && tickAt < due) due = tickAt;
      due = Math.min(due, this.connections.silenceDue);
    }
    if (this.roster.size === 0 && this.store.lastSeq > 0) due = Math.min(due, this.store.lastTime + this.settings.retention);
    // A round starts only at the time of the last event (see startRoundIfSafe); after a tick it waits for the next.
    const retryAt = this.order.atLastEvent ? this.rounds.retryAt(this.store.lastSeq) : undefined;
    if (retryAt !== undefined && retryAt < due) due = retryAt;
    return due === Infinity ? undefined : due;
  }

  /**
   * Does what is due: writes what waits for storage, closes sockets that never said hello or went silent, ends grace
   * periods, gives up on a stalled snapshot, ticks the replicas that asked, and deletes a room idle past retention.
   */
  wake(): void {
    const now = this.options.clock();
    if (this.writes.due <= now) this.writes.flush();
    this.admission.expire(now);
    if (this.connections.silenceDue <= now) this.connections.dropSilent(now, this.roster.list(), (client) => this.goAway(client, now));
    if (this.anyAway) {
      for (const client of this.roster.list()) {
        if (client.awayUntil !== undefined && client.awayUntil <= now) this.exit(client, now);
      }
    }
    this.roster.forgetRetired(now);
    this.rounds.expire(now);
    // A round that is owed starts now (see SnapshotRounds.retryAt), and one for a full log, due or not.
    this.startRoundIfSafe(this.logFull);
    this.order.tick(now);
    if (this.roster.size === 0 && this.store.lastSeq > 0 && now >= this.store.lastTime + this.settings.retention) this.deleteRoom();
  }

  /**
   * Starts a round after the last event when one is due, or `force`d (the log is full: an event that fills it starts
   * the round that would empty it, as no later event could), but not once a tick has moved replicated time
   * past that event: replicas hash their time too, and must all be at the event's.
   */
  private startRoundIfSafe(force = false): void {
    if (this.order.atLastEvent) this.rounds.startIfDue(this.store.lastSeq, force);
  }

  /** A connection received more than `maxLag` beyond what it acknowledged: it resumes where it is, on a new one. */
  private fellBehind(connection: Connection<Socket>): void {
    const client = connection.client;
    this.connections.forget(connection, CLOSE_BEHIND, "too far behind");
    if (client?.connection === connection) this.goAway(client, this.options.clock());
  }

  private deleteRoom(): void {
    this.store.deleteAll();
    this.store = RoomStore.empty(this.options.storage);
    this.writes.clear();
    this.order.reset();
    this.rounds.restart();
  }

  /** A frame over the rate limit is refused; a connection refused too often within one refill window is closed. */
  private rateLimited(connection: Connection<Socket>, now: number): void {
    const { rateLimit, rateBurst } = this.settings;
    this.connections.refuse(connection, "rate-limited", `more than ${rateBurst} frames at once or ${rateLimit} per second; this frame was dropped`);
    if (!connection.limiter.refused(now)) return;
    // A flooder loses its seat at once: no grace period, and the others see it leave.
    const client = connection.client;
    this.connections.forget(connection, CLOSE_FLOODING, "flooding");
    if (client !== undefined) this.leaveNow(client, this.options.clock());
  }

  /** A client's socket is gone: it stays in the room, away, for the grace period (or `grace`). */
  private goAway(client: Client<Socket>, now: number, grace = this.settings.grace): void {
    this.roster.away(client, now, grace);
    this.rounds.leave(client.id);
  }

  /** A client leaves at once, without a grace period: it said goodbye, or lost its seat. */
  private leaveNow(client: Client<Socket>, now: number): void {
    client.connection = undefined;
    this.rounds.leave(client.id);
    if (this.roster.has(client)) this.exit(client, now);
  }

  private post(client: Client<Socket>, id: number, payload: string, sentAt: number): void {
    const connection = client.connection!;
    // A resend of a post that is already in the order: the client learns so from the event or its next welcome.
    if (id <= client.lastPost) return;
    // Posts go in the order they were numbered: one refused (say, over budget) must not be overtaken by the next,
    // or its resend would look like a duplicate and be lost.
    if (id > client.lastPost + 1) {
      return this.connections.refuse(
        connection,
        "out-of-order",
        `post ${id} comes before post ${client.lastPost + 1}; send posts in order from ${client.lastPost + 1}`,
      );
    }
    if (this.logFull) {
      return this.connections.refuse(
        connection,
        "log-full",
        "this room's history is full until its members store a snapshot; this post was not taken",
        LOG_FULL_RETRY,
      );
    }
    const { perSecond, burst } = this.roster.budget;
    client.budget.retune(perSecond, burst, sentAt);
    if (!client.budget.take(sentAt)) {
      const rate = `${Math.round(perSecond * 100) / 100} posts a second, ${burst} at once`;
      return this.connections.refuse(
        connection,
        "over-budget",
        `this room takes ${rate} from each of its ${this.roster.size} clients now; this post was not taken`,
        client.budget.waitTime(sentAt),
      );
    }
    client.lastPost = id;
    this.delivery.broadcast(this.order.record({ type: "message", client: client.id, id, payload }));
    this.startRoundIfSafe(this.logFull);
  }

  private exit(client: Client<Socket>, now: number): void {
    this.roster.remove(client);
    // The exit goes in the log before the client's record goes: a crash between them leaves a client that exits
    // again after a grace period, never one that stays in the room for good.
    this.delivery.broadcast(this.order.record({ type: "user-exit", client: client.id }));
    this.roster.retire(client, now);
    this.startRoundIfSafe(this.logFull);
  }
}

/** The options with their undefined settings left out, so that they do not hide the defaults. */
function definedOnly(options: Partial<ReflectorSettings>): Partial<ReflectorSettings> {
  return Object.fromEntries(Object.entries(options).filter(([key, value]) => key in DEFAULT_SETTINGS && value !== undefined));
}

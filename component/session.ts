/**
 * A client's connection to a room: `SessionCore` (frames in, frames out, no I/O) run over partysocket, with the
 * socket's lifecycle around it: the ticket for the door, heartbeats and the watchdog, the page's online, offline and
 * pagehide events, and the status they give. The view talks to the model only through `publish`, which reaches the
 * order exactly once, however often the connection drops.
 *
 * Every payload and snapshot is sealed end to end with the room's key, bound to its place (see `room-key.ts`); the
 * reflector relays ciphertext only. The same class runs in the browser and, given a WebSocket implementation such as
 * `ws`, headless in Node.
 */
import ReconnectingWebSocket from "partysocket/ws";
import { CLOSE_BAD_ROOM, CLOSE_NOT_MEMBER, PING, ticketText } from "../common/protocol.js";
import type { PendingEvent } from "./outbox.js";
import { isRoomSecret, RoomKey } from "./room-key.js";
import { topicKey, type Model, type ModelClass, type Replica, type ViewEvent } from "./runtime.js";
import { SessionCore, type CoreNotice, type Identity } from "./session-core.js";
import type { Divergence } from "./snapshot-duty.js";

export type { PendingEvent } from "./outbox.js";
export type { Divergence } from "./snapshot-duty.js";

export type SessionStatus = "connecting" | "connected" | "reconnecting" | "offline";

export interface SessionOptions<M extends Model = Model> {
  /** The reflector's `host[:port]`. */
  host: string;
  room: string;
  /**
   * The room's secret (base64url, at least 128 bits), from the join link's `#key=`. Without one the key is derived
   * from the room name: encrypted, but readable by anyone who knows the name.
   */
  key?: string;
  /** The party; defaults to `main`. */
  party?: string;
  /** The root model class; every client of a room must use the same one. */
  model: ModelClass<M>;
  /** Options for the root model's `init`; every client of a room must pass the same. */
  modelOptions?: unknown;
  /** `ws` or `wss`; by default `ws` for loopback and private addresses, as partysocket picks. */
  protocol?: "ws" | "wss";
  /** A WebSocket implementation for Node, where there is no global one. */
  WebSocket?: unknown;
  /**
   * What this client tells the room's members of itself when it joins as a new client, as model data (for instance
   * a name the user chose); the root model's `user-enter` handler gets it. Called at each such join.
   */
  profile?: () => unknown;
}

/** The events a session fires, by name. */
export interface SessionEventMap {
  /** `status` changed. */
  status: Event;
  /** A replica is ready after a (re)connection: render everything. */
  welcome: Event;
  /** A batch of events was applied. */
  update: Event;
  /** `pending` changed. */
  pending: Event;
  /** Replicas disagreed at a snapshot point; see `divergence`. */
  divergence: Event;
  /** The room's snapshot does not check out; the session has left. See `badSnapshot`. */
  "bad-snapshot": Event;
  /** The reflector refused a frame. */
  "reflector-error": CustomEvent<{ code: string; message: string }>;
}

type ViewHandler = (data: unknown) => void;
type Listener<K extends keyof SessionEventMap> = (event: SessionEventMap[K]) => void;

/** A heartbeat left unanswered this long means the connection is dead, whatever the socket says. */
const PONG_TIMEOUT = 10_000;

/** The listeners of a session's events are typed by `SessionEventMap`. Types only: no code. */
// biome-ignore lint/correctness/noUnusedVariables: merged with the class of the same name below.
export interface Session<M extends Model = Model> {
  addEventListener<K extends keyof SessionEventMap>(type: K, listener: Listener<K> | null, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof SessionEventMap>(type: K, listener: Listener<K> | null, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/**
 * Joins a room with `Session.join(options)`; see `SessionEventMap` for its events. `M` is the root model's class,
 * which `model` has.
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface above only types the inherited listeners.
export class Session<M extends Model = Model> extends EventTarget {
  readonly #options: SessionOptions<M>;
  readonly #core: SessionCore;
  readonly #key: Promise<RoomKey>;
  readonly #ready: Promise<void>;
  readonly #viewHandlers = new Map<string, Set<ViewHandler>>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #status: SessionStatus = "connecting";
  #socket: ReconnectingWebSocket | undefined;
  #lastHeard = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  /** How far the server's clock is ahead of this device's, as a stale-ticket refusal told: tickets use the server's. */
  #serverClockOffset = 0;
  #removePageListeners = () => {};
  /** Where this tab keeps the identity for a reload: the reflector's host and the room's address. */
  #identityPlace: string | undefined;

  private constructor(options: SessionOptions<M>) {
    super();
    this.#options = options;
    if (options.key !== undefined && !isRoomSecret(options.key)) {
      throw new Error("multiuser-chat: the room key must be base64url text of at least 128 bits (22 characters or more)");
    }
    this.#key = RoomKey.derive(options.room, options.key);
    this.#core = new SessionCore({
      room: options.room,
      key: this.#key,
      model: options.model,
      modelOptions: options.modelOptions,
      clock: () => performance.now(),
      setTimer: (ms, callback) => {
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          callback();
        }, ms);
        this.#timers.add(timer);
      },
      send: (text) => this.#sendNow(text),
      notify: (notice) => this.#noticed(notice),
      profile: () => {
        const profile = options.profile?.();
        return profile === undefined ? undefined : JSON.stringify(profile);
      },
    });
    this.#ready = new Promise((resolve, reject) => {
      this.addEventListener("welcome", () => resolve(), { once: true });
      this.addEventListener("bad-snapshot", () => reject(new Error(`multiuser-chat: the snapshot of room ${options.room} does not check out`)), { once: true });
    });
    // Only a caller of whenReady needs to hear of the rejection; the session reports it as an event too.
    this.#ready.catch(() => {});
    // The room's address names its key, so the socket can open only once the key is derived. A page reloaded in
    // this tab comes back as the client it was.
    void this.#key.then((key) => {
      this.#identityPlace = `${options.host}/${key.address}`;
      const identity = takeIdentity(this.#identityPlace);
      if (identity !== undefined) this.#core.resumeAs(identity);
      this.#connect(key);
    });
    this.#watchPage();
  }

  /** Joins a room. `await session.whenReady()` for the first welcome. Throws on a key that is not valid. */
  static join<M extends Model>(options: SessionOptions<M>): Session<M> {
    return new Session(options);
  }

  /** Resolves once the first welcome has been applied; rejects if the room's snapshot does not check out. */
  whenReady(): Promise<void> {
    return this.#ready;
  }

  get status(): SessionStatus {
    return this.#status;
  }
  /** This client's id, given by the reflector; it survives reconnections within the grace period. */
  get clientId(): string | undefined {
    return this.#core.clientId;
  }
  /** The replica of the room's state: read it, never change it. */
  get replica(): Replica | undefined {
    return this.#core.replica;
  }
  /** The root model, read-only for views: change it only by publishing. */
  get model(): M | undefined {
    return this.#core.replica?.root as M | undefined;
  }
  /** Events published by this client that are not yet in the order, oldest first. */
  get pending(): readonly PendingEvent[] {
    return this.#core.pending;
  }
  /** Set when the reflector reported that replicas disagree. */
  get divergence(): Divergence | undefined {
    return this.#core.divergence;
  }
  /** True once the room's snapshot did not check out; the session has then left. */
  get badSnapshot(): boolean {
    return this.#core.badSnapshot;
  }
  /**
   * True when this client's own entry was the room's first event: nobody had used the room at this address, which
   * is the room's name and its key. A link with a mistyped key leads to such a room of its own.
   */
  get newRoom(): boolean {
    return this.#core.newRoom;
  }
  /** True once the session has left, by `leave()` or because trying again could not help. */
  get left(): boolean {
    return this.#core.left;
  }

  /**
   * Sends an event to the models of every replica, this one included, through the reflector. While disconnected
   * it waits in `pending` and goes out on reconnection; either way it reaches the order exactly once.
   */
  publish(scope: string, event: string, data?: unknown): void {
    this.#core.publish(scope, event, data);
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
    this.#close({ reload: false });
  }

  #close({ reload }: { reload: boolean }): void {
    this.#core.leave({ reload });
    this.#stopHeartbeat();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#removePageListeners();
    this.#socket?.close();
  }

  /**
   * Opens partysocket's reconnecting socket to the room's address, `/parties/PARTY/ADDRESS`, with a connection id
   * (`_pk`, as partysocket's own client sends) and a ticket for the door made afresh for every attempt.
   */
  #connect(key: RoomKey): void {
    if (this.#core.left) return;
    const { host, party = "main", protocol = defaultProtocol(host), WebSocket } = this.#options;
    const connection = crypto.randomUUID();
    const url = async () => {
      const at = Math.round(Date.now() + this.#serverClockOffset);
      const query = new URLSearchParams({ _pk: connection, key: key.publicKey, at: String(at), ticket: await key.prove(ticketText(key.address, at)) });
      return `${protocol}://${host}/parties/${party}/${key.address}?${query}`;
    };
    const socket = new ReconnectingWebSocket(url, undefined, {
      // Come back well within the reflector's grace period, and keep trying at a modest pace when it is down.
      minReconnectionDelay: 250,
      maxReconnectionDelay: 4000,
      minUptime: 2000,
      // Never queue a frame for a later connection: partysocket would send it there before our hello, and the
      // reflector refuses it (out-of-turn). Everything a connection needs is resent after its welcome.
      maxEnqueuedMessages: 0,
      ...(WebSocket === undefined ? {} : { WebSocket }),
    });
    this.#socket = socket;
    socket.addEventListener("message", (event) => {
      this.#lastHeard = Date.now();
      void this.#core.receive(String((event as MessageEvent).data));
    });
    // After the frames that came before it: a welcome still being handled must not say "connected" after this.
    socket.addEventListener(
      "close",
      (event) =>
        void this.#core.disconnected().then(() => {
          this.#stopHeartbeat();
          // Trying again cannot help: the room's name is not one, or this client cannot prove it holds the key.
          const code = (event as CloseEvent).code;
          if (code === CLOSE_BAD_ROOM || code === CLOSE_NOT_MEMBER) this.leave();
          if (!this.#core.left) this.#setStatus(this.#disconnectedStatus());
        }),
    );
  }

  #noticed(notice: CoreNotice): void {
    switch (notice.type) {
      case "welcome":
        this.#startHeartbeat(this.#core.welcome!.heartbeat);
        this.#setStatus("connected");
        return void this.dispatchEvent(new Event("welcome"));
      case "update":
        this.#deliverToView(notice.events);
        return void this.dispatchEvent(new Event("update"));
      case "bad-snapshot":
        this.leave();
        return void this.dispatchEvent(new Event("bad-snapshot"));
      case "reflector-error":
        // This device's clock is off: tickets go by the server's from now on; the door closed the socket, and
        // partysocket reconnects with a new ticket.
        if (notice.code === "stale-ticket" && notice.time !== undefined) this.#serverClockOffset = notice.time - Date.now();
        // The reflector does not take these credentials: join as a new client, on a new connection.
        if (notice.code === "identity") this.#socket?.reconnect();
        return void this.dispatchEvent(new CustomEvent("reflector-error", { detail: { code: notice.code, message: notice.message } }));
      default:
        return void this.dispatchEvent(new Event(notice.type));
    }
  }

  /** Sends on the open socket; what would go to a closed one is dropped, as everything is sent again after a welcome. */
  #sendNow(text: string): void {
    if (this.#socket?.readyState === ReconnectingWebSocket.OPEN) this.#socket.send(text);
  }

  #deliverToView(events: ViewEvent[]): void {
    for (const { scope, event, data } of events) {
      for (const handler of this.#viewHandlers.get(topicKey(scope, event)) ?? []) handler(data);
    }
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
      this.#sendNow(PING);
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
    if (status === this.#status) return;
    this.#status = status;
    this.dispatchEvent(new Event("status"));
  }

  /** The status while the socket is not open. */
  #disconnectedStatus(): SessionStatus {
    if (isOffline()) return "offline";
    return this.#core.clientId === undefined ? "connecting" : "reconnecting";
  }

  /**
   * In a browser, the status says offline as soon as the network is gone (the socket may take a while to notice),
   * and the session reconnects at once when it is back instead of trusting a socket that lived through the outage.
   */
  #watchPage(): void {
    if (typeof window === "undefined") return;
    const offline = () => this.#setStatus("offline");
    const online = () => {
      this.#setStatus(this.#disconnectedStatus());
      this.#socket?.reconnect();
    };
    // A page that goes away may be a reload, which must come back as the same client without the others noticing,
    // or a closed tab, which must leave promptly. So it leaves with a short grace period (RELOAD_GRACE_MS), and keeps
    // its identity in the tab for the reloaded page, which takes it back at once.
    const pagehide = (event: PageTransitionEvent) => {
      if (event.persisted || this.#core.left) return;
      const identity = this.#core.identity;
      if (identity !== undefined && this.#identityPlace !== undefined) keepIdentity(this.#identityPlace, identity);
      this.#close({ reload: true });
    };
    const listening = new AbortController();
    const options = { signal: listening.signal };
    window.addEventListener("offline", offline, options);
    window.addEventListener("online", online, options);
    window.addEventListener("pagehide", pagehide, options);
    this.#removePageListeners = () => listening.abort();
  }
}

/** `ws` for loopback and private addresses, `wss` elsewhere: what partysocket picks. */
function defaultProtocol(host: string): "ws" | "wss" {
  return /^(localhost:|127\.0\.0\.1:|\[::ffff:7f00:1\]:|192\.168\.|10\.|172\.(1[6-9]|2\d|3[01])\.)/.test(host) ? "ws" : "wss";
}

/**
 * The identities a tab keeps for a reload, per reflector host and room address (`sessionStorage`: per tab, so two
 * windows are two users). Taking one deletes it, so that a copy of the tab cannot take it too.
 */
const identitiesKey = (place: string) => `multiuser-chat identities ${place}`;

function keptIdentities(place: string): Identity[] {
  try {
    return JSON.parse(sessionStorage.getItem(identitiesKey(place)) ?? "[]") as Identity[];
  } catch {
    return [];
  }
}

function takeIdentity(place: string): Identity | undefined {
  const identities = keptIdentities(place);
  const identity = identities.shift();
  if (identity !== undefined) sessionStorage.setItem(identitiesKey(place), JSON.stringify(identities));
  return identity;
}

function keepIdentity(place: string, identity: Identity): void {
  sessionStorage.setItem(identitiesKey(place), JSON.stringify([...keptIdentities(place), identity]));
}

function isOffline(): boolean {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}

/**
 * A client's connection to a session: it joins the reflector's room with partysocket, builds a replica from the
 * welcome, applies reflected events in sequence order and hands model-to-view notifications to the view after each
 * batch. The view talks to the model only through `publish`, which goes through the reflector.
 *
 * The same class runs in the browser and, given a WebSocket implementation such as `ws`, headless in Node.
 */
import { PartySocket } from "partysocket";
import { encodePublish, parseServerFrame, type ServerFrame } from "../party/protocol.js";
import { encodeModelEvent, Replica, topicKey, type Model, type ModelClass, type ViewEvent } from "./runtime.js";

export type SessionStatus = "connecting" | "connected" | "reconnecting" | "offline";

export interface SessionOptions {
  /** The reflector's `host[:port]`. */
  host: string;
  room: string;
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

type ViewHandler = (data: unknown) => void;

/**
 * Events: `status` (the status changed), `welcome` (a new replica was built: re-render everything), `update`
 * (a batch of events was applied), `reflector-error` (the reflector refused a frame; `detail` has code and message).
 */
export class Session extends EventTarget {
  status: SessionStatus = "connecting";
  /** This window's client id, given by the reflector in the welcome. */
  clientId: string | undefined;
  replica: Replica | undefined;

  private readonly socket: PartySocket;
  private readonly viewHandlers = new Map<string, Set<ViewHandler>>();
  private readonly ready: Promise<void>;
  private removeOnlineListeners = () => {};
  private left = false;

  constructor(private readonly options: SessionOptions) {
    super();
    this.socket = new PartySocket({
      host: options.host,
      room: options.room,
      party: options.party,
      protocol: options.protocol,
      ...(options.WebSocket === undefined ? {} : { WebSocket: options.WebSocket }),
    });
    this.ready = new Promise((resolve) => this.addEventListener("welcome", () => resolve(), { once: true }));
    this.socket.addEventListener("message", (event) => this.receive(String((event as MessageEvent).data)));
    this.socket.addEventListener("close", () => {
      if (!this.left) this.setStatus(this.disconnectedStatus());
    });
    this.watchOnline();
  }

  /** Joins a room; `await session.whenReady()` for the first welcome. */
  static join(options: SessionOptions): Session {
    return new Session(options);
  }

  /** Resolves once the first welcome has been applied. */
  whenReady(): Promise<void> {
    return this.ready;
  }

  /** The root model, read-only for views: change it only by publishing. */
  get model(): Model | undefined {
    return this.replica?.root;
  }

  /** Sends an event to the models of every replica, this one included, through the reflector. */
  publish(scope: string, event: string, data?: unknown): void {
    this.socket.send(encodePublish(encodeModelEvent(scope, event, data)));
  }

  /** Calls `handler(data)` for each model-to-view event in `scope`/`event`. Returns a function that unsubscribes. */
  subscribe(scope: string, event: string, handler: ViewHandler): () => void {
    const key = topicKey(scope, event);
    const handlers = this.viewHandlers.get(key) ?? new Set();
    handlers.add(handler);
    this.viewHandlers.set(key, handlers);
    return () => handlers.delete(handler);
  }

  /** Leaves the room for good. */
  leave(): void {
    this.left = true;
    this.removeOnlineListeners();
    this.socket.close();
  }

  private receive(data: string): void {
    let frame: ServerFrame;
    try {
      frame = parseServerFrame(data);
    } catch (error) {
      console.error("multiuser-chat: cannot read a frame from the reflector", error);
      return;
    }
    switch (frame.type) {
      case "welcome": {
        const replica = Replica.create(frame.room, this.options.model, this.options.modelOptions);
        for (const event of frame.events) replica.apply(event);
        replica.advanceTo(frame.time);
        // Notifications from catching up describe the past; the view renders the whole state instead.
        replica.takeViewEvents();
        this.replica = replica;
        this.clientId = frame.client;
        this.setStatus("connected");
        this.dispatchEvent(new Event("welcome"));
        return;
      }
      case "tick":
        this.replica?.advanceTo(frame.time);
        break;
      case "error":
        console.warn(`multiuser-chat: the reflector refused a frame (${frame.code}): ${frame.message}`);
        this.dispatchEvent(new CustomEvent("reflector-error", { detail: { code: frame.code, message: frame.message } }));
        return;
      case "message":
      case "user-enter":
      case "user-exit":
        this.replica?.apply(frame);
        break;
      default:
        console.warn("multiuser-chat: ignoring a frame of unknown type from the reflector", frame);
        return;
    }
    this.deliverToView(this.replica?.takeViewEvents() ?? []);
  }

  private deliverToView(events: ViewEvent[]): void {
    for (const { scope, event, data } of events) {
      for (const handler of this.viewHandlers.get(topicKey(scope, event)) ?? []) handler(data);
    }
    if (events.length > 0) this.dispatchEvent(new Event("update"));
  }

  private setStatus(status: SessionStatus): void {
    if (status === this.status) return;
    this.status = status;
    this.dispatchEvent(new Event("status"));
  }

  /** The status while the socket is not open. */
  private disconnectedStatus(): SessionStatus {
    if (isOffline()) return "offline";
    return this.clientId === undefined ? "connecting" : "reconnecting";
  }

  /**
   * In a browser, the status says offline as soon as the network is gone (the socket may take a while to notice),
   * and the socket reconnects at once when it is back instead of waiting out its backoff.
   */
  private watchOnline(): void {
    if (typeof window === "undefined") return;
    const offline = () => this.setStatus("offline");
    const online = () => {
      if (this.socket.readyState === PartySocket.OPEN) {
        this.setStatus(this.clientId === undefined ? "connecting" : "connected");
      } else {
        this.setStatus(this.disconnectedStatus());
        this.socket.reconnect();
      }
    };
    window.addEventListener("offline", offline);
    window.addEventListener("online", online);
    this.removeOnlineListeners = () => {
      window.removeEventListener("offline", offline);
      window.removeEventListener("online", online);
    };
  }
}

function isOffline(): boolean {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}

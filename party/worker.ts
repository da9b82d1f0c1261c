import { routePartykitRequest, Server, type Connection } from "partyserver";
import { newToken } from "../common/base64url.js";
import { sha256Hex, verifyMember } from "../common/crypto.js";
import { CLOSE_BAD_ROOM, encodeError, parseRoomAddress, PING, PONG } from "../common/protocol.js";
import { Reflector } from "./reflector.js";
import { RoomAlarm } from "./room-alarm.js";
import { checkTicket } from "./ticket.js";
import { settingsFromEnv, type ReflectorSettings } from "./settings.js";

interface Env {
  Main: DurableObjectNamespace<Main>;
  /** "1" logs every entry into a room's code, for the bench's count of wake-ups and the eviction test. */
  LOG_ENTRIES?: string;
  [variable: string]: unknown;
}

/**
 * The PartyServer adapter, what deploys to Cloudflare: one room is one SQLite-backed Durable Object bound as `Main`,
 * so its sockets stay at `/parties/main/ROOM`, and all its logic lives in `Reflector`.
 *
 * Rooms hibernate: between frames no JavaScript runs, no timer is set, and the platform answers heartbeats itself.
 * When the object is evicted and wakes again (its constructor runs while sockets are still open), `onStart` rebuilds
 * the reflector from storage and the sockets' attachments, and the room goes on as if nothing happened.
 */
export class Main extends Server<Env> {
  static override options = { hibernate: true };
  private reflector!: Reflector<Connection>;
  private readonly roomAlarm: RoomAlarm;
  private readonly settings: ReflectorSettings;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.settings = settingsFromEnv(env);
    this.roomAlarm = new RoomAlarm(ctx.storage);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
  }

  override async onStart(): Promise<void> {
    this.trace("start");
    await this.roomAlarm.load();
    this.reflector = await Reflector.open({
      ...this.settings,
      storage: this.ctx.storage,
      clock: Date.now,
      newToken,
      sockets: this.getConnections(),
      heartbeatAt: (socket) => this.ctx.getWebSocketAutoResponseTimestamp(socket)?.getTime(),
      verifyHello: (nonce, key, proof) => verifyMember(this.name, nonce, key, proof),
      digest: sha256Hex,
      setTimer: (ms, callback) => setTimeout(callback, ms),
      changed: () => this.schedule(),
    });
    this.schedule();
  }

  override onConnect(connection: Connection): void {
    this.trace("connect");
    this.reflector.connect(connection);
    this.schedule();
  }

  override onMessage(connection: Connection, message: string | ArrayBuffer | ArrayBufferView): void {
    this.trace("message");
    this.reflector.receive(connection, message);
    this.schedule();
  }

  override onClose(connection: Connection): void {
    this.trace("close");
    this.reflector.disconnect(connection);
    this.schedule();
  }

  override onError(connection: Connection): void {
    this.trace("error");
    this.reflector.disconnect(connection);
    this.schedule();
  }

  override onAlarm(): void {
    this.trace("alarm");
    this.roomAlarm.fired();
    this.reflector.wake();
    this.schedule();
  }

  private schedule(): void {
    this.roomAlarm.set(this.reflector.nextWakeAt());
  }

  private trace(entry: string): void {
    if (this.env.LOG_ENTRIES === "1") console.log(`room ${this.name}: ${entry}`);
  }
}

/**
 * The door: a socket to an address that names no room (`bad-room`), or without a ticket signed with the room's key
 * (`not-member`, `stale-ticket`; see party/ticket.ts), is turned away here, before a Durable Object exists for it;
 * so is any plain HTTP request to a room. Such requests cost the rooms nothing and wake none, and nobody can make
 * rooms under such names.
 */
async function refuseAtTheDoor(request: Request, env: Env): Promise<Response | undefined> {
  const url = new URL(request.url);
  const [prefix, party, name] = url.pathname.split("/").filter(Boolean);
  if (prefix !== "parties" || party === undefined || name === undefined) return undefined;
  if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
    return new Response("This is a chat room's WebSocket address; open it with a WebSocket client.\n", { status: 426, headers: { Upgrade: "websocket" } });
  }
  let address: string;
  try {
    address = decodeURIComponent(name);
  } catch {
    address = name;
  }
  const problem = parseRoomAddress(address, settingsFromEnv(env).maxRoomIdLength);
  const refusal =
    typeof problem === "string"
      ? { frame: encodeError("bad-room", problem), code: CLOSE_BAD_ROOM, reason: "bad room id" }
      : await checkTicket(address, url.searchParams, Date.now());
  if (refusal === undefined) return undefined;
  const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
  server.accept();
  server.send(refusal.frame);
  server.close(refusal.code, refusal.reason);
  return new Response(null, { status: 101, webSocket: client });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    // Everything in dist/ (the demo and the element's scripts) is served by the platform before this runs.
    return (await refuseAtTheDoor(request, env)) ?? (await routePartykitRequest(request, env)) ?? new Response("Not found\n", { status: 404 });
  },
} satisfies ExportedHandler<Env>;

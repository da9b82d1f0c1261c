/**
 * A bare socket speaking the wire protocol, for tests that need to see (and send) frames exactly as they are: a
 * member that answers its challenge with the room's key, or a stranger that does not hold it.
 */
import WebSocket from "ws";
import { RoomKey } from "../../component/room-key.js";
import {
  encodeClientFrame,
  helloChallenge,
  parseServerFrames,
  PROTOCOL_VERSION,
  type ClientFrame,
  type ReflectedEvent,
  type ServerFrame,
  type Welcome,
} from "../../common/protocol.js";
import { memberUrl } from "./ticket.js";
import { waitFor } from "./wait-for.js";

type Resume = { client: string; secret: string; seq: number };
type EventFrame = Extract<ServerFrame, ReflectedEvent>;
export const isEvent = (frame: ServerFrame): frame is EventFrame => frame.type === "message" || frame.type === "user-enter" || frame.type === "user-exit";

export interface RawClientOptions {
  /** The room's secret; without one, the room is keyed by its name, as for a Session without `key`. */
  secret?: string;
  /** partysocket's connection id, `_pk`; a random one by default. */
  pk?: string;
  /** Open another address than the room's own (another key's room, or no valid address at all). */
  address?: string;
  /** False for a client that does not acknowledge the marks in its stream, as one that stopped reading would not. */
  acknowledges?: boolean;
  /** The ticket for the door: made with this client's key now (the default), made at another time, or none. */
  ticket?: { at: number } | false;
  /** Opens exactly this address (a member's, replayed) instead of one made from the options above. */
  url?: string;
}

export class RawClient {
  /** Every frame received, a batch's one by one. */
  readonly frames: ServerFrame[] = [];
  /** Every text the socket received, as it came: a batch is one text. */
  readonly texts: string[] = [];
  closed: { code: number; reason: string } | undefined;
  readonly done: Promise<void>;
  private posts = 0;

  private constructor(
    readonly socket: WebSocket,
    /** The room's key as this client holds it. */
    readonly key: RoomKey,
    acknowledges: boolean,
  ) {
    socket.on("message", (data) => {
      this.texts.push(String(data));
      for (const frame of parseServerFrames(String(data))) {
        this.frames.push(frame);
        if (frame.type === "mark" && acknowledges) this.send({ type: "ack", mark: frame.id });
      }
    });
    this.done = new Promise((resolve) =>
      socket.once("close", (code, reason) => {
        this.closed = { code, reason: String(reason) };
        resolve();
      }),
    );
  }

  /** Opens a socket to `room` on `host` and waits until it is open (its challenge may still be on its way). */
  static async open(host: string, room: string, options: RawClientOptions = {}): Promise<RawClient> {
    const key = await RoomKey.derive(room, options.secret);
    const pk = options.pk ?? `raw-${Math.random().toString(36).slice(2)}`;
    const { address, ticket } = options;
    const url =
      options.url ?? (await memberUrl(host, key, { address, at: ticket === false ? undefined : ticket?.at, ticket: ticket !== false, query: { _pk: pk } }));
    const client = new RawClient(new WebSocket(url), key, options.acknowledges ?? true);
    await new Promise<void>((resolve, reject) => {
      client.socket.once("open", () => resolve());
      client.socket.once("error", reject);
    });
    return client;
  }

  /** Opens a socket as a member, answers its challenge and waits for the welcome and the events it announces. */
  static async join(host: string, room: string, options: RawClientOptions & { resume?: Resume } = {}): Promise<RawClient> {
    const client = await RawClient.open(host, room, options);
    await client.hello(options.resume);
    await client.welcomed();
    return client;
  }

  send(frame: ClientFrame | Record<string, unknown> | string | Buffer): void {
    this.socket.send(typeof frame === "string" || Buffer.isBuffer(frame) ? frame : encodeClientFrame(frame as ClientFrame));
  }

  /** The challenge this connection got. */
  async challenge(): Promise<string> {
    await waitFor(() => this.frames.some((frame) => frame.type === "challenge"), "the challenge");
    return this.frames.find((frame): frame is Extract<ServerFrame, { type: "challenge" }> => frame.type === "challenge")!.nonce;
  }

  /** A member's hello to this connection's challenge, signed with the room's key. */
  async helloFrame(resume?: Resume): Promise<ClientFrame> {
    const proof = await this.key.prove(helloChallenge(this.key.address, await this.challenge()));
    return { type: "hello", version: PROTOCOL_VERSION, key: this.key.publicKey, proof, ...(resume === undefined ? {} : { resume }) };
  }

  async hello(resume?: Resume): Promise<void> {
    this.send(await this.helloFrame(resume));
  }

  /** Publishes `payload` as this client's next post; opaque, unless sealed with `sealPost` first. */
  publish(payload: string, id = ++this.posts): void {
    this.posts = Math.max(this.posts, id);
    this.send({ type: "publish", id, payload });
  }

  /** A payload sealed as an honest member seals its post `id` (the client id comes from the welcome). */
  sealPost(event: { scope: string; event: string; data: unknown }, id: number): Promise<string> {
    return this.key.sealPost(JSON.stringify(event), this.welcome!.client, id);
  }

  get welcome(): Welcome | undefined {
    return this.frames.find((frame): frame is Welcome => frame.type === "welcome");
  }

  ofType<T extends ServerFrame["type"]>(type: T): Extract<ServerFrame, { type: T }>[] {
    return this.frames.filter((frame): frame is Extract<ServerFrame, { type: T }> => frame.type === type);
  }

  errors(): { code: string; message: string }[] {
    return this.ofType("error").map(({ code, message }) => ({ code, message }));
  }

  /** The events received after the welcome's catch-up, or all of them. */
  events(): EventFrame[] {
    return this.frames.filter(isEvent);
  }

  /** The welcome, the snapshot parts and the events it announced, once they have all arrived. */
  async welcomed(): Promise<{ welcome: Welcome; parts: Extract<ServerFrame, { type: "snapshot" }>[]; events: EventFrame[] }> {
    await waitFor(() => {
      const welcome = this.welcome;
      return welcome !== undefined && (welcome.last === welcome.from || this.frames.some((frame) => isEvent(frame) && frame.seq === welcome.last));
    }, "a raw client's welcome and its events");
    const welcome = this.welcome!;
    const parts = this.ofType("snapshot");
    const events = this.frames.filter(isEvent).filter((frame) => frame.seq <= welcome.last);
    return { welcome, parts, events };
  }

  /** Leaves for good and closes, without waiting for the server to answer the close. */
  leave(): void {
    if (this.socket.readyState === WebSocket.OPEN) this.send({ type: "leave" });
    this.socket.close();
  }
}

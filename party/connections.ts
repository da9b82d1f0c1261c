/**
 * The room's open sockets, each a connection from its challenge on: which are present (every event goes to those),
 * what is sent to one, and which have gone silent. A forgotten connection is closed and its frames are ignored.
 */
import { CLOSE_SILENT, encodeError, type ErrorCode } from "../common/protocol.js";
import type { Client, Connection } from "./client.js";
import { newAccount, trySend, type Delivery } from "./delivery.js";
import { RateLimiter, SendClock } from "./limits.js";
import { closeSocket, type ClientSocket, type ReflectorOptions } from "./platform.js";
import type { ReflectorSettings } from "./settings.js";

type ConnectionSettings = Pick<ReflectorSettings, "rateLimit" | "rateBurst" | "floodRefusals" | "silenceTimeout">;

export class Connections<Socket extends ClientSocket> {
  /** Every open socket. Keyed by socket, never by the client-chosen `_pk`. */
  private readonly open = new Map<Socket, Connection<Socket>>();
  /** When to look for sockets that have gone silent; Infinity while nobody is present. */
  private silenceCheckAt = Infinity;

  constructor(
    private readonly delivery: Delivery<Socket>,
    private readonly options: Pick<ReflectorOptions<Socket>, "clock" | "heartbeatAt">,
    private readonly settings: ConnectionSettings,
    /** A connection was forgotten: the room awaits no hello on its socket. */
    private readonly forgotten: (socket: Socket) => void,
  ) {}

  /** The room hears `socket` from now on, as a connection that has not said hello. */
  add(socket: Socket, opened: number, nonce: string, now: number): Connection<Socket> {
    const connection: Connection<Socket> = {
      socket,
      client: undefined,
      nonce,
      limiter: new RateLimiter(this.settings, now),
      clock: new SendClock(),
      opened,
      lastHeard: now,
      ...newAccount(),
    };
    this.open.set(socket, connection);
    return connection;
  }

  get(socket: Socket): Connection<Socket> | undefined {
    return this.open.get(socket);
  }

  /** The connection's client is present: every event goes to it, and it must keep sending heartbeats. */
  present(connection: Connection<Socket>): void {
    if (this.delivery.count === 0) this.silenceCheckAt = this.options.clock() + this.settings.silenceTimeout;
    this.delivery.add(connection);
  }

  /** Forgets a connection, closing its socket with `code` when one is given: its frames are ignored from now on. */
  forget(connection: Connection<Socket>, code?: number, reason?: string): void {
    if (connection.client?.connection === connection) this.delivery.remove(connection);
    if (this.delivery.count === 0) this.silenceCheckAt = Infinity;
    this.open.delete(connection.socket);
    this.forgotten(connection.socket);
    if (code !== undefined) closeSocket(connection.socket, code, reason ?? "");
  }

  /** Sends to one connection; a welcomed one counts it against what it may hold unacknowledged. */
  send(connection: Connection<Socket>, text: string): void {
    if (connection.client === undefined && connection.welcomeLength === 0) trySend(connection.socket, text);
    else this.delivery.send(connection, text);
  }

  refuse(connection: Connection<Socket>, code: ErrorCode, message: string, retry?: number): void {
    this.send(connection, encodeError(code, message, { retry }));
  }

  /** When to look for silent sockets; Infinity while nobody is present. */
  get silenceDue(): number {
    return this.silenceCheckAt;
  }

  /**
   * Closes the sockets that have sent nothing, heartbeats included, for `silenceTimeout`: their peers are gone
   * without a word, and each one's client goes `away`. Looks again when the quietest of the others could be silent
   * that long.
   */
  dropSilent(now: number, clients: Client<Socket>[], away: (client: Client<Socket>) => void): void {
    let quietest = Infinity;
    for (const client of clients) {
      const connection = client.connection;
      if (connection === undefined) continue;
      const heard = Math.max(connection.lastHeard, this.options.heartbeatAt?.(connection.socket) ?? 0);
      if (now - heard >= this.settings.silenceTimeout) {
        this.forget(connection, CLOSE_SILENT, "no heartbeat");
        away(client);
      } else {
        quietest = Math.min(quietest, heard);
      }
    }
    this.silenceCheckAt = quietest + this.settings.silenceTimeout;
  }
}

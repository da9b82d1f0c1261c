import type * as Party from "partykit/server";
import { newToken } from "../common/base64url.js";
import { sha256Hex, verifyMember } from "../common/crypto.js";
import { CLOSE_BAD_ROOM, encodeError, parseRoomAddress } from "../common/protocol.js";
import { Reflector } from "./reflector.js";
import { RoomAlarm } from "./room-alarm.js";
import { checkTicket } from "./ticket.js";
import { settingsFromEnv, type ReflectorSettings } from "./settings.js";

/**
 * The PartyKit adapter (`partykit dev`, the stack this project was first asked for): one room is one session, and
 * all its logic lives in `Reflector`. PartyKit rooms do not hibernate, so the reflector answers heartbeats itself.
 */
export default class ReflectorRoom implements Party.Server {
  readonly options: Party.ServerOptions = { hibernate: false };
  private reflector!: Reflector<Party.Connection>;
  private readonly roomAlarm: RoomAlarm;
  private readonly settings: ReflectorSettings;

  constructor(readonly room: Party.Room) {
    this.roomAlarm = new RoomAlarm(room.storage);
    this.settings = settingsFromEnv(room.env);
  }

  // Never reads `room.id`: a room woken by its alarm starts without one.
  async onStart(): Promise<void> {
    await this.roomAlarm.load();
    this.reflector = await Reflector.open({
      ...this.settings,
      storage: this.room.storage,
      clock: Date.now,
      newToken,
      sockets: this.room.getConnections(),
      // Read when a hello arrives, never in an alarm: a room woken by its alarm has no id.
      verifyHello: (nonce, key, proof) => verifyMember(this.room.id, nonce, key, proof),
      digest: sha256Hex,
      setTimer: (ms, callback) => setTimeout(callback, ms),
      changed: () => this.schedule(),
    });
    this.schedule();
  }

  /**
   * The door (see party/ticket.ts): a socket to an address that names no room, or without a ticket signed with the
   * room's key, is never handed to the reflector, so it takes no place there and its frames are ignored until it
   * closes. Only storage may be awaited before `connect` without reordering frames; the client sends nothing before
   * its challenge, which comes from `connect`, so the ticket's check may be awaited here.
   */
  async onConnect(connection: Party.Connection, context: Party.ConnectionContext): Promise<void> {
    // Reads `room.id`, as the check of a hello does: a connection always has a room id, an alarm may not.
    const parsed = parseRoomAddress(this.room.id, this.settings.maxRoomIdLength);
    const refusal =
      typeof parsed === "string"
        ? { frame: encodeError("bad-room", parsed), code: CLOSE_BAD_ROOM, reason: "bad room id" }
        : await checkTicket(this.room.id, new URL(context.request.url).searchParams, Date.now());
    if (refusal !== undefined) {
      connection.send(refusal.frame);
      connection.close(refusal.code, refusal.reason);
      return;
    }
    this.reflector.connect(connection);
    this.schedule();
  }

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection): void {
    this.reflector.receive(sender, message);
    this.schedule();
  }

  onClose(connection: Party.Connection): void {
    this.reflector.disconnect(connection);
    this.schedule();
    // Answers the client's close frame, which PartyKit leaves unanswered until the client gives up waiting.
    try {
      connection.close(1000, "closed");
    } catch {
      // already closed
    }
  }

  onError(connection: Party.Connection): void {
    this.reflector.disconnect(connection);
    this.schedule();
  }

  onAlarm(): void {
    this.roomAlarm.fired();
    this.reflector.wake();
    this.schedule();
  }

  private schedule(): void {
    this.roomAlarm.set(this.reflector.nextWakeAt());
  }
}

import type * as Party from "partykit/server";
import { newToken } from "./base64url.js";
import { checkRoomId, CLOSE_BAD_ROOM, encodeError } from "./protocol.js";
import { Reflector } from "./reflector.js";
import { RoomAlarm } from "./room-alarm.js";
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
    this.reflector = await Reflector.open({ ...this.settings, storage: this.room.storage, clock: Date.now, newToken, sockets: this.room.getConnections() });
    this.schedule();
  }

  onConnect(connection: Party.Connection): void {
    // The one place that reads `room.id`: a connection always has a room id, an alarm may not.
    const problem = checkRoomId(this.room.id, this.settings.maxRoomIdLength);
    if (problem !== undefined) {
      // Never handed to the reflector, so its frames are ignored until it closes.
      connection.send(encodeError("bad-room", problem));
      connection.close(CLOSE_BAD_ROOM, "bad room id");
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

import type * as Party from "partykit/server";
import { toBase64Url } from "./base64url.js";
import { checkRoomId, encodeError, MAX_ROOM_ID_LENGTH } from "./protocol.js";
import { CLOSE_BAD_ROOM, DEFAULT_SETTINGS, Reflector, retentionAction, type ReflectorSettings } from "./reflector.js";

/** Idle rooms are deleted after this long without an event and without clients (`RETENTION_MS`). */
export const DEFAULT_RETENTION = 30 * 24 * 60 * 60 * 1000;

/** 128 random bits, base64url: unguessable, so nobody can claim another client's id or secret. */
function newToken(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
}

/** Each setting can be overridden by a PartyKit variable, e.g. `GRACE_MS=20000`. */
const SETTING_VARIABLES: Record<keyof ReflectorSettings, string> = {
  tickInterval: "TICK_INTERVAL_MS",
  grace: "GRACE_MS",
  snapshotEvents: "SNAPSHOT_EVENTS",
  snapshotInterval: "SNAPSHOT_INTERVAL_MS",
  snapshotGap: "SNAPSHOT_GAP_MS",
  voteTimeout: "VOTE_TIMEOUT_MS",
  writeInterval: "WRITE_INTERVAL_MS",
  maxFrameLength: "MAX_FRAME_LENGTH",
  rateLimit: "RATE_LIMIT",
  rateBurst: "RATE_BURST",
  floodRefusals: "FLOOD_REFUSALS",
  maxClients: "MAX_CLIENTS",
  helloTimeout: "HELLO_TIMEOUT_MS",
};

/** Settings that make no sense at zero: a limit of zero would refuse everything (or, for RATE_LIMIT, divide by it). */
const POSITIVE_SETTINGS = new Set(["MAX_FRAME_LENGTH", "RATE_LIMIT", "RATE_BURST", "MAX_CLIENTS", "MAX_ROOM_ID_LENGTH", "HELLO_TIMEOUT_MS"]);

function setting(env: Record<string, unknown>, name: string, fallback: number): number {
  const value = env[name];
  if (value === undefined || value === "") return fallback;
  const number = Number(value);
  if (!Number.isFinite(number) || number < 0) throw new Error(`${name} must be a number of zero or more, not ${JSON.stringify(value)}`);
  if (number === 0 && POSITIVE_SETTINGS.has(name)) throw new Error(`${name} must be above zero`);
  return number;
}

/** The PartyKit adapter: one room is one session, and all its logic lives in `Reflector`. */
export default class ReflectorRoom implements Party.Server {
  readonly options: Party.ServerOptions = { hibernate: false };
  private reflector!: Reflector<Party.Connection>;
  private wakeTimer: ReturnType<typeof setTimeout> | undefined;
  private wakeAt = Infinity;
  private readonly retention: number;
  private readonly maxRoomIdLength: number;

  constructor(readonly room: Party.Room) {
    this.retention = setting(room.env, "RETENTION_MS", DEFAULT_RETENTION);
    this.maxRoomIdLength = setting(room.env, "MAX_ROOM_ID_LENGTH", MAX_ROOM_ID_LENGTH);
  }

  // Never reads `room.id`: a room woken by its alarm starts without one.
  async onStart(): Promise<void> {
    await this.open();
  }

  onConnect(connection: Party.Connection): void {
    // The one place that reads `room.id`: a connection always has a room id, an alarm may not.
    const problem = checkRoomId(this.room.id, this.maxRoomIdLength);
    if (problem !== undefined) {
      // Never handed to the reflector, so its frames are ignored until it closes.
      connection.send(encodeError("bad-room", problem));
      connection.close(CLOSE_BAD_ROOM, "bad room id");
      return;
    }
    this.reflector.connect(connection);
    // Its hello timeout is now due, even in a room with nobody else.
    this.scheduleWake();
  }

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection): void {
    this.reflector.receive(sender, message);
    this.scheduleWake();
  }

  onClose(connection: Party.Connection): void {
    this.reflector.disconnect(connection);
    this.scheduleWake();
  }

  onError(connection: Party.Connection): void {
    this.reflector.disconnect(connection);
    this.scheduleWake();
  }

  /** The retention alarm: deletes the room once it has been empty and idle for the retention period. */
  async onAlarm(): Promise<void> {
    const action = retentionAction(Date.now(), this.reflector.lastActivity, this.retention, this.reflector.isEmpty);
    if (action.delete) {
      await this.room.storage.deleteAll();
      await this.open();
    } else if (action.alarmAt !== undefined) {
      await this.room.storage.setAlarm(action.alarmAt);
    }
  }

  private async open(): Promise<void> {
    const settings = Object.fromEntries(
      Object.entries(SETTING_VARIABLES).map(([key, name]) => [key, setting(this.room.env, name, DEFAULT_SETTINGS[key as keyof ReflectorSettings])]),
    ) as unknown as ReflectorSettings;
    this.reflector = await Reflector.open({ ...settings, storage: this.room.storage, clock: Date.now, newToken });
    this.scheduleWake();
  }

  /** One timer per room, armed for the earliest thing the reflector has due; an empty room arms its alarm instead. */
  private scheduleWake(): void {
    const delay = this.reflector.nextWakeIn();
    if (delay === undefined) {
      this.armRetention();
      return;
    }
    const at = Date.now() + delay;
    if (this.wakeTimer !== undefined && this.wakeAt <= at) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.wakeAt = Infinity;
      this.reflector.wake();
      this.scheduleWake();
    }, delay);
  }

  private armRetention(): void {
    const action = retentionAction(Date.now(), this.reflector.lastActivity, this.retention, this.reflector.isEmpty);
    const at = action.delete ? Date.now() : action.alarmAt;
    if (at !== undefined) this.room.storage.setAlarm(at).catch((error: unknown) => console.error("setting the retention alarm failed", error));
  }
}

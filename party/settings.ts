/**
 * The reflector's settings in one place: each one's variable name (a Worker or PartyKit var), its default, and the
 * range it must be in. Both adapters read them with `settingsFromEnv`; docs/protocol.md#settings lists them, and a
 * test holds that list to this one.
 */
import { MAX_FRAME_LENGTH, MAX_ROOM_ID_LENGTH, MAX_SNAPSHOT_PARTS, SNAPSHOT_PART_LENGTH } from "../common/protocol.js";

export interface ReflectorSettings {
  /** How long a client whose socket dropped stays present, waiting for it to resume. */
  grace: number;
  /**
   * How long a client whose page said it is being reloaded (`leave` with `reload`) stays present: long enough for
   * the page to come back as the same client, short enough that a closed tab leaves promptly.
   */
  reloadGrace: number;
  /** How often a client sends a heartbeat; told in the welcome. The platform answers it without waking the room. */
  heartbeat: number;
  /**
   * A socket that has sent nothing, heartbeats included, for this long is dead: the room closes it and its client
   * goes away. Checked whenever the room wakes, and by an alarm no more often than this, so an idle room stays asleep.
   */
  silenceTimeout: number;
  /**
   * A snapshot falls due after this many events, which is also the most a newcomer replays below the gap's rate.
   * Each round is a burst of about three frames per client; at 500 under load they lengthened the delivery tail by a
   * third (docs/performance.md, item 10)...
   */
  snapshotEvents: number;
  /** ...or after the events since the last round have this many UTF-16 code units, so that a welcome stays small... */
  snapshotBytes: number;
  /** ...or after this long with at least one event, whichever comes first... */
  snapshotInterval: number;
  /**
   * ...but never sooner than this after the last round: under heavy traffic `snapshotEvents` alone would start
   * several rounds a second, each with a vote, an upload and storage writes.
   */
  snapshotGap: number;
  /** How long the reflector waits for hashes, and then for an upload, before it gives up on a snapshot. */
  voteTimeout: number;
  /**
   * How long an event (or any other record) may wait to be written to storage with the ones after it; 0 writes each
   * at once. At most 5 s: a room sleeps after 10 s without events, and its flush alarm must come first.
   */
  writeInterval: number;
  /** An empty room is deleted this long after its last event. */
  retention: number;
  /** Largest client frame, in UTF-16 code units; never more than MAX_FRAME_LENGTH, which storage needs. */
  maxFrameLength: number;
  /** Frames per second a connection may send on average: its token bucket refills at this rate... */
  rateLimit: number;
  /** ...up to this many tokens, which is also how many frames it may send at once. */
  rateBurst: number;
  /**
   * A connection that has more than this many frames refused as rate-limited within one refill window
   * (rateBurst / rateLimit seconds: the time an empty bucket takes to fill) is closed as flooding.
   */
  floodRefusals: number;
  /** Clients, present or away, a room holds; a newcomer beyond them is refused. Resumes are always allowed. */
  maxClients: number;
  /** Milliseconds a socket may stay open without saying hello: sockets that never join must not pile up... */
  helloTimeout: number;
  /** ...nor may more than this many wait for their hello at once; more are turned away (`busy`) until some are done. */
  maxWaiting: number;
  /** Longest room name. */
  maxRoomIdLength: number;
  /**
   * Longest an event waits to be sent with the ones after it. When events come faster than one per this many
   * milliseconds, each client gets one frame holding all of them; at light load nothing waits.
   */
  coalesce: number;
  /**
   * Posts per second the room accepts from all its clients together. Each client's share is this divided by the
   * clients in the room, at most `rateLimit`, with a burst of three seconds' worth (at least one post).
   */
  roomRate: number;
  /** New clients per second the room admits on average (a token bucket refilling at this rate)... */
  joinRate: number;
  /** ...and at once. Resumes are not counted. */
  joinBurst: number;
  /**
   * UTF-16 code units a connection may have received beyond what it acknowledged (besides its welcome); one further
   * behind is closed and resumes where it is. Clients acknowledge every quarter of it.
   */
  maxLag: number;
  /** The log after the snapshot, in UTF-16 code units, beyond which the room takes no more posts or newcomers. */
  maxLog: number;
  /** Largest snapshot, in UTF-16 code units of its sealed text; a larger upload is refused. */
  maxSnapshot: number;
}

interface Setting {
  /** The Worker or PartyKit variable that overrides the default. */
  variable: string;
  default: number;
  /** Zero would refuse everything (or, for RATE_LIMIT, divide by it). */
  positive?: true;
  /** Largest value the variable may take. */
  max?: number;
}

export const SETTINGS: { readonly [Key in keyof ReflectorSettings]: Setting } = {
  grace: { variable: "GRACE_MS", default: 10_000 },
  reloadGrace: { variable: "RELOAD_GRACE_MS", default: 4000 },
  heartbeat: { variable: "HEARTBEAT_MS", default: 20_000, positive: true },
  silenceTimeout: { variable: "SILENCE_TIMEOUT_MS", default: 300_000, positive: true },
  snapshotEvents: { variable: "SNAPSHOT_EVENTS", default: 1000 },
  snapshotBytes: { variable: "SNAPSHOT_BYTES", default: 256 * 1024, positive: true },
  snapshotInterval: { variable: "SNAPSHOT_INTERVAL_MS", default: 60_000 },
  snapshotGap: { variable: "SNAPSHOT_GAP_MS", default: 1000 },
  voteTimeout: { variable: "VOTE_TIMEOUT_MS", default: 10_000 },
  writeInterval: { variable: "WRITE_INTERVAL_MS", default: 1000, max: 5000 },
  retention: { variable: "RETENTION_MS", default: 30 * 24 * 60 * 60 * 1000 },
  maxFrameLength: { variable: "MAX_FRAME_LENGTH", default: MAX_FRAME_LENGTH, positive: true, max: MAX_FRAME_LENGTH },
  rateLimit: { variable: "RATE_LIMIT", default: 20, positive: true },
  rateBurst: { variable: "RATE_BURST", default: 60, positive: true },
  floodRefusals: { variable: "FLOOD_REFUSALS", default: 100 },
  maxClients: { variable: "MAX_CLIENTS", default: 100, positive: true },
  helloTimeout: { variable: "HELLO_TIMEOUT_MS", default: 10_000, positive: true },
  maxWaiting: { variable: "MAX_WAITING", default: 50, positive: true },
  maxRoomIdLength: { variable: "MAX_ROOM_ID_LENGTH", default: MAX_ROOM_ID_LENGTH, positive: true, max: MAX_ROOM_ID_LENGTH },
  coalesce: { variable: "COALESCE_MS", default: 5, max: 100 },
  roomRate: { variable: "ROOM_RATE", default: 600, positive: true },
  joinRate: { variable: "JOIN_RATE", default: 1, positive: true },
  joinBurst: { variable: "JOIN_BURST", default: 20, positive: true },
  maxLag: { variable: "MAX_LAG", default: 256 * 1024, positive: true },
  maxLog: { variable: "MAX_LOG", default: 1024 * 1024, positive: true },
  maxSnapshot: { variable: "MAX_SNAPSHOT", default: 2 * 1024 * 1024, positive: true, max: MAX_SNAPSHOT_PARTS * SNAPSHOT_PART_LENGTH },
};

const keys = Object.keys(SETTINGS) as (keyof ReflectorSettings)[];

export const DEFAULT_SETTINGS: Readonly<ReflectorSettings> = Object.freeze(
  Object.fromEntries(keys.map((key) => [key, SETTINGS[key].default])) as unknown as ReflectorSettings,
);

/**
 * The settings a deployment's variables give, the defaults for the rest. A variable that is not a number in its
 * range throws an error naming it, so a room never runs on a setting it misread.
 */
export function settingsFromEnv(env: Record<string, unknown>): ReflectorSettings {
  const settings = { ...DEFAULT_SETTINGS };
  for (const key of keys) {
    const { variable, positive, max } = SETTINGS[key];
    const value = env[variable];
    if (value === undefined || value === "") continue;
    const number = Number(value);
    if (!Number.isFinite(number) || number < 0) throw new Error(`${variable} must be a number of zero or more, not ${JSON.stringify(value)}`);
    if (number === 0 && positive) throw new Error(`${variable} must be above zero`);
    if (max !== undefined && number > max) throw new Error(`${variable} must be at most ${max}, not ${number}`);
    settings[key] = number;
  }
  return settings;
}

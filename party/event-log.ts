import { encodeEvent, type ReflectedEvent } from "./protocol.js";

/** The part of PartyKit's room storage the log needs; a Map-backed object with the same methods drives it in Node tests. */
export interface LogStorage {
  put(key: string, value: string): Promise<void>;
  list(options: { prefix: string }): Promise<Map<string, unknown>>;
}

const KEY_PREFIX = "event:";
/** Zero-padded so that storage's lexicographic key order is sequence order. */
const eventKey = (seq: number) => KEY_PREFIX + String(seq).padStart(12, "0");

/**
 * The room's ordered event log, kept in memory for welcomes and in room storage so the room survives every
 * client leaving and a server restart. Each event is its own storage value, which MAX_FRAME_LENGTH keeps below
 * the 128 KiB limit.
 */
export class EventLog {
  private constructor(
    private readonly storage: LogStorage,
    /** Every event as sent on the wire, oldest first, so a welcome never re-encodes them. */
    readonly encoded: string[],
    private seq: number,
    private time: number,
  ) {}

  static async load(storage: LogStorage): Promise<EventLog> {
    const encoded = [...(await storage.list({ prefix: KEY_PREFIX })).values()].map(String);
    const last = encoded.length > 0 ? (JSON.parse(encoded.at(-1)!) as ReflectedEvent) : undefined;
    return new EventLog(storage, encoded, last?.seq ?? 0, last?.time ?? 0);
  }

  /** Sequence number of the last event; 0 for an empty log. */
  get lastSeq(): number {
    return this.seq;
  }

  get lastTime(): number {
    return this.time;
  }

  /** The events themselves, decoded anew: only needed when a room starts. */
  replay(): ReflectedEvent[] {
    return this.encoded.map((text) => JSON.parse(text) as ReflectedEvent);
  }

  /**
   * Appends and starts the write without awaiting it: awaiting inside a message handler would let later
   * messages overtake this one. Storage operations themselves stay in call order.
   */
  append(event: ReflectedEvent): string {
    const text = encodeEvent(event);
    this.encoded.push(text);
    this.seq = event.seq;
    this.time = event.time;
    this.storage.put(eventKey(event.seq), text).catch((error: unknown) => {
      console.error(`event log: storing event ${event.seq} failed`, error);
    });
    return text;
  }
}

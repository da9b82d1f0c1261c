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
    /** Every event, oldest first. */
    readonly events: ReflectedEvent[],
    /** The same events as sent on the wire, so a welcome never re-encodes them. */
    readonly encoded: string[],
  ) {}

  static async load(storage: LogStorage): Promise<EventLog> {
    const stored = await storage.list({ prefix: KEY_PREFIX });
    const encoded = [...stored.values()].map(String);
    return new EventLog(storage, encoded.map((text) => JSON.parse(text) as ReflectedEvent), encoded);
  }

  get lastSeq(): number {
    return this.events.at(-1)?.seq ?? 0;
  }

  get lastTime(): number {
    return this.events.at(-1)?.time ?? 0;
  }

  /**
   * Appends and starts the write without awaiting it: awaiting inside a message handler would let later
   * messages overtake this one. Storage operations themselves stay in call order.
   */
  append(event: ReflectedEvent): string {
    const text = encodeEvent(event);
    this.events.push(event);
    this.encoded.push(text);
    this.storage.put(eventKey(event.seq), text).catch((error: unknown) => {
      console.error(`event log: storing event ${event.seq} failed`, error);
    });
    return text;
  }
}

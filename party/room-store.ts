import { encodeEvent, type ReflectedEvent } from "../common/protocol.js";

/** The part of PartyKit's room storage the reflector needs; a Map-backed object with the same methods drives it in Node tests. */
export interface RoomStorage {
  get(key: string): Promise<unknown>;
  /** Writes at most 128 values in one operation, as Durable Object storage does. */
  put(entries: Record<string, unknown>, options?: WriteOptions): Promise<void>;
  /** Deletes at most 128 keys per call, as Durable Object storage does. */
  delete(keys: string[], options?: WriteOptions): Promise<number>;
  list(options: { prefix: string }): Promise<Map<string, unknown>>;
  deleteAll(options?: WriteOptions): Promise<void>;
}

/**
 * `allowUnconfirmed` lets frames sent after a write go out before storage confirms it. Without it the Durable
 * Object's output gate holds every frame back until then, which puts a disk write into each message's latency.
 */
export interface WriteOptions {
  allowUnconfirmed?: boolean;
}

/** Which events a stored chunk holds. */
interface StoredChunk {
  first: number;
  last: number;
}

/** A client the room counts as present: its secret, and while its socket is gone, when its grace period ends. */
export interface ClientRecord {
  secret: string;
  awayUntil?: number;
}

/**
 * What the room must remember across a sleep besides its log and its clients: the floor of replicated time (a tick
 * moves it without an event), the tick the replicas asked for, when the last snapshot round fell due, and the round
 * in progress. Kept in memory and written with the next flush.
 */
export interface RoomRecord {
  time: number;
  tickAt?: number;
  lastDueSeq: number;
  lastDueAt: number;
  /** UTF-16 code units of the events since the last round fell due. */
  dueLength?: number;
  /** Rounds in a row that ended without a snapshot. */
  failedRounds?: number;
  round?: StoredRound;
}

/** A snapshot round as stored: enough to go on with it after the room slept. Parts being uploaded are not kept. */
export interface StoredRound {
  seq: number;
  voters: string[];
  hashes: [string, string][];
  deadline: number;
  candidates?: string[];
  hash?: string;
  uploader?: string;
}

/** A client whose grace period ended, remembered so that a late return learns which of its posts got through. */
export interface RetiredClient {
  secret: string;
  lastPost: number;
  /** When the room forgets it. */
  until: number;
}

/** The latest snapshot a majority of replicas agreed on: opaque text, in the parts it was uploaded in. */
export interface StoredSnapshot {
  seq: number;
  /** What the majority voted: the SHA-256 of the joined parts, which a newcomer checks. */
  hash: string;
  /** The reflector's time when it was stored; the log's time when no event follows it. */
  time: number;
  parts: string[];
  /** Highest post id sequenced per client when it was stored, since the events that carried them are trimmed. */
  lastPosts: Record<string, number>;
}

const EVENTS_PREFIX = "events:";
/**
 * Most UTF-16 code units of events in one stored chunk. Storage takes at most two bytes per code unit and 128 KiB
 * per value, and one event alone always fits: MAX_FRAME_LENGTH keeps it below 62,000.
 */
const CHUNK_LENGTH = 64_000;
const SNAPSHOT_KEY = "snapshot";
/** Zero-padded so that storage's lexicographic key order is sequence order. */
const pad = (n: number) => String(n).padStart(12, "0");
/** The key of a chunk of events, named by the first one's sequence number. */
const chunkKey = (first: number) => EVENTS_PREFIX + pad(first);
const snapshotPartPrefix = (seq: number) => `${SNAPSHOT_KEY}:${pad(seq)}:`;
const snapshotPartKey = (seq: number, index: number) => snapshotPartPrefix(seq) + String(index).padStart(4, "0");
const CLIENT_PREFIX = "client:";
const ROOM_KEY = "room";
const RETIRED_PREFIX = "retired:";
/** Durable Object storage takes at most 128 keys per put or delete. */
const KEYS_PER_OPERATION = 128;
const UNCONFIRMED: WriteOptions = { allowUnconfirmed: true };

/**
 * What a room keeps: its ordered log (the latest snapshot and every event after it) and the secrets of the clients
 * it counts as present. All of it lives in memory for welcomes and in room storage, so the room survives every
 * client leaving and a server restart.
 *
 * Writes are started without awaiting them: awaiting inside a message handler would let later messages overtake
 * this one. Storage operations themselves stay in call order, so a crash leaves a prefix of them done, and the
 * snapshot's record is written only after all its parts.
 *
 * Events are not written one by one, since a storage write per message costs more CPU than sending it to ten
 * clients: `append` collects them and `flushEvents` writes them as one chunk, one storage value below the
 * 128 KiB limit. The reflector flushes `writeInterval` after the first unwritten event. No write waits for
 * confirmation before later frames go out, so a crash of the room can lose the tail of the log that clients
 * have already seen (see docs/protocol.md).
 */
export class RoomStore {
  private constructor(
    private readonly storage: RoomStorage,
    private latest: StoredSnapshot | undefined,
    /** Every event after the snapshot as sent on the wire, oldest first, so a welcome never re-encodes them. */
    private readonly encoded: string[],
    /** The stored chunks that hold events after the snapshot, oldest first. */
    private readonly chunks: StoredChunk[],
    private seq: number,
    private time: number,
    /** Every client that is present or within its grace period, by client id. */
    readonly clients: Map<string, ClientRecord>,
    /** Clients whose grace period ended, by client id; kept in storage so that a restart does not forget them. */
    readonly retired: Map<string, RetiredClient>,
  ) {}

  /** UTF-16 code units of the events after the snapshot: what a welcome sends besides the snapshot. */
  private length = 0;
  /** Events appended but not yet written, oldest first, and their length in code units. */
  private unwritten: string[] = [];
  private unwrittenLength = 0;
  /** The room record as loaded. */
  private roomRecord: RoomRecord | undefined;

  /** A room that has never stored anything, or whose storage was just deleted. */
  static empty(storage: RoomStorage): RoomStore {
    return new RoomStore(storage, undefined, [], [], 0, 0, new Map(), new Map());
  }

  static async load(storage: RoomStorage): Promise<RoomStore> {
    const record = (await storage.get(SNAPSHOT_KEY)) as (Omit<StoredSnapshot, "parts"> & { parts: number }) | undefined;
    let snapshot: StoredSnapshot | undefined;
    if (record !== undefined) {
      const parts = [...(await storage.list({ prefix: snapshotPartPrefix(record.seq) })).values()].map(String);
      if (parts.length !== record.parts) throw new Error(`room storage holds ${parts.length} of the ${record.parts} parts of snapshot ${record.seq}`);
      snapshot = { ...record, parts };
    }
    const base = snapshot?.seq ?? 0;
    const encoded: string[] = [];
    const chunks: StoredChunk[] = [];
    const stale: string[] = [];
    for (const [key, value] of await storage.list({ prefix: EVENTS_PREFIX })) {
      const first = Number(key.slice(EVENTS_PREFIX.length));
      const texts = value as string[];
      if (first + texts.length - 1 <= base) {
        stale.push(key);
        continue;
      }
      // A chunk may begin before the snapshot: its first events are covered by it.
      encoded.push(...texts.slice(Math.max(0, base + 1 - first)));
      chunks.push({ first, last: first + texts.length - 1 });
    }
    const clients = new Map(
      [...(await storage.list({ prefix: CLIENT_PREFIX }))].map(([key, record]) => [key.slice(CLIENT_PREFIX.length), record as ClientRecord]),
    );
    const retired = new Map(
      [...(await storage.list({ prefix: RETIRED_PREFIX }))].map(([key, record]) => [key.slice(RETIRED_PREFIX.length), record as RetiredClient]),
    );
    const store = new RoomStore(storage, snapshot, encoded, chunks, base, snapshot?.time ?? 0, clients, retired);
    store.length = encoded.reduce((sum, text) => sum + text.length, 0);
    store.roomRecord = (await storage.get(ROOM_KEY)) as RoomRecord | undefined;
    // Left over when a server stopped between storing a snapshot and trimming the events it covers.
    store.deleteKeys(stale);
    const last = encoded.length > 0 ? (JSON.parse(encoded.at(-1)!) as ReflectedEvent) : undefined;
    if (last !== undefined) {
      store.seq = last.seq;
      store.time = last.time;
    }
    return store;
  }

  /** Sequence number of the last event; 0 for an empty log. */
  get lastSeq(): number {
    return this.seq;
  }

  get lastTime(): number {
    return this.time;
  }

  get snapshot(): StoredSnapshot | undefined {
    return this.latest;
  }

  /** Sequence number the snapshot covers; events after it are kept. */
  get snapshotSeq(): number {
    return this.latest?.seq ?? 0;
  }

  /** Time of the first event after the snapshot; undefined when there is none. */
  get firstTime(): number | undefined {
    return this.encoded.length === 0 ? undefined : (JSON.parse(this.encoded[0]!) as ReflectedEvent).time;
  }

  /** UTF-16 code units of the events after the snapshot. */
  get logLength(): number {
    return this.length;
  }

  /** Events after `seq`, encoded; `seq` must not be below the snapshot's. */
  eventsAfter(seq: number): string[] {
    if (seq < this.snapshotSeq) throw new Error(`events up to ${this.snapshotSeq} are trimmed; send the snapshot instead`);
    return this.encoded.slice(seq - this.snapshotSeq);
  }

  /** The events after the snapshot, decoded anew: only needed when a room starts. */
  replay(): ReflectedEvent[] {
    return this.encoded.map((text) => JSON.parse(text) as ReflectedEvent);
  }

  /** Events appended since the last flush. */
  get unwrittenEvents(): number {
    return this.unwritten.length;
  }

  /** The room record as loaded; undefined for a room that never wrote one. */
  get room(): RoomRecord | undefined {
    return this.roomRecord;
  }

  /** Writes the events appended since the last flush as one chunk, then `room` when given. */
  flush(room?: RoomRecord): void {
    this.flushEvents();
    if (room !== undefined) this.put({ [ROOM_KEY]: room }, "storing the room record");
  }

  /** Adds an event to the log; it is written with the next `flushEvents`, or at once when a chunk is full. */
  append(event: ReflectedEvent): string {
    const text = encodeEvent(event);
    if (this.unwrittenLength + text.length > CHUNK_LENGTH) this.flushEvents();
    this.encoded.push(text);
    this.length += text.length;
    this.seq = event.seq;
    this.time = event.time;
    this.unwritten.push(text);
    this.unwrittenLength += text.length;
    return text;
  }

  /** Writes every event appended since the last flush as one chunk: one storage value, whatever the count. */
  flushEvents(): void {
    if (this.unwritten.length === 0) return;
    const chunk = { first: this.seq - this.unwritten.length + 1, last: this.seq };
    this.put({ [chunkKey(chunk.first)]: this.unwritten }, `storing events ${chunk.first} to ${chunk.last}`);
    this.chunks.push(chunk);
    this.unwritten = [];
    this.unwrittenLength = 0;
  }

  /** Keeps `snapshot` as the room's starting point and trims every event it covers, in memory and in storage. */
  storeSnapshot(snapshot: Omit<StoredSnapshot, "time">): void {
    const previous = this.latest;
    const { seq, parts, hash, lastPosts } = snapshot;
    if (seq <= this.snapshotSeq || seq > this.seq) throw new Error(`snapshot ${seq} is not between ${this.snapshotSeq} and ${this.seq}`);
    // The log in storage stays a prefix of the order: every event before the snapshot's record.
    this.flushEvents();
    for (let start = 0; start < parts.length; start += KEYS_PER_OPERATION) {
      const batch = parts.slice(start, start + KEYS_PER_OPERATION).map((part, index) => [snapshotPartKey(seq, start + index), part]);
      this.put(Object.fromEntries(batch), `storing snapshot ${seq}`);
    }
    this.put({ [SNAPSHOT_KEY]: { seq, hash, time: this.time, parts: parts.length, lastPosts } }, `storing snapshot ${seq}`);
    for (const text of this.encoded.splice(0, seq - this.snapshotSeq)) this.length -= text.length;
    // Chunks the snapshot covers whole go; one it covers in part stays, and the next load skips its first events.
    const covered = this.chunks.findIndex((chunk) => chunk.last > seq);
    const keys = this.chunks.splice(0, covered === -1 ? this.chunks.length : covered).map((chunk) => chunkKey(chunk.first));
    if (previous !== undefined) keys.push(...previous.parts.map((_, index) => snapshotPartKey(previous.seq, index)));
    this.latest = { seq, hash, time: this.time, parts, lastPosts };
    this.deleteKeys(keys);
  }

  /**
   * Records a client the room counts as present until `forgetClient`, so a restarted server can resume it. Client
   * records are written after every event appended before them, so that they never run ahead of the log.
   */
  rememberClient(id: string, record: ClientRecord): void {
    this.flushEvents();
    this.clients.set(id, record);
    this.put({ [CLIENT_PREFIX + id]: record }, "storing a client");
  }

  forgetClient(id: string): void {
    this.flushEvents();
    this.clients.delete(id);
    this.deleteKeys([CLIENT_PREFIX + id]);
  }

  /** Records a client whose grace period ended, with the last post the room ordered for it. */
  rememberRetired(id: string, record: RetiredClient): void {
    this.retired.set(id, record);
    this.put({ [RETIRED_PREFIX + id]: { ...record } }, "storing a retired client");
  }

  forgetRetired(id: string): void {
    this.retired.delete(id);
    this.deleteKeys([RETIRED_PREFIX + id]);
  }

  /** Deletes everything the room stored: an idle room's retention ended. */
  deleteAll(): void {
    this.write(this.storage.deleteAll(UNCONFIRMED), "deleting the room");
  }

  private deleteKeys(keys: string[]): void {
    for (let start = 0; start < keys.length; start += KEYS_PER_OPERATION) {
      this.write(this.storage.delete(keys.slice(start, start + KEYS_PER_OPERATION), UNCONFIRMED), "deleting old keys");
    }
  }

  private put(entries: Record<string, unknown>, what: string): void {
    this.write(this.storage.put(entries, UNCONFIRMED), what);
  }

  private write(operation: Promise<unknown>, what: string): void {
    operation.catch((error: unknown) => console.error(`room store: ${what} failed`, error));
  }
}

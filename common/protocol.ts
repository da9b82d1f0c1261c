/**
 * The wire format between the reflector and its clients: the only module that builds or parses frames.
 * Every frame is one JSON text message; `docs/protocol.md` documents each of them.
 */

/** Bumped whenever a frame changes shape; a client and a reflector speaking different versions refuse each other. */
export const PROTOCOL_VERSION = 3;

/**
 * Largest client frame the reflector accepts, in UTF-16 code units, as received. Storage keeps a string in at most
 * two bytes per code unit, and re-encoding a payload never makes it longer than the client's own escaped form, so
 * every stored event stays below PartyKit's 128 KiB value limit whatever characters the payload holds.
 */
export const MAX_FRAME_LENGTH = 60 * 1024;

/**
 * Largest piece of a snapshot in one frame, in UTF-16 code units. A part is stored as it arrives, so the frame
 * limit applies to it as well; this leaves room for the frame's own fields.
 */
export const SNAPSHOT_PART_LENGTH = 56 * 1024;
/** A snapshot has at most this many parts (about 14 MB of UTF-16 text). */
export const MAX_SNAPSHOT_PARTS = 256;
/** Longest client id, resume secret or state hash a client may send. */
const MAX_TOKEN_LENGTH = 128;

/** Longest room name, by default (`MAX_ROOM_ID_LENGTH`); a room name is also limited to the characters of ROOM_ID_CHARACTERS. */
export const MAX_ROOM_ID_LENGTH = 64;
/** The characters a room name may use: letters, digits, `_` and `-`, so it is safe in a URL path, a file name and a log line. */
export const ROOM_ID_CHARACTERS = /^[A-Za-z0-9_-]+$/;

/**
 * Why `id` cannot name a room, or undefined when it can: 1 to `maxLength` characters of ROOM_ID_CHARACTERS.
 * The element checks the room name it is given; the reflector checks the name in a room's address.
 */
export function checkRoomId(id: string, maxLength = MAX_ROOM_ID_LENGTH): string | undefined {
  if (id.length === 0) return "the room id is empty";
  if (id.length > maxLength) return `the room id is ${id.length} characters long; the limit is ${maxLength}`;
  if (!ROOM_ID_CHARACTERS.test(id)) return "a room id may hold only the letters A-Z and a-z, digits, _ and -";
  return undefined;
}

/**
 * A room's address, the name of its socket (`/parties/main/ADDRESS`), is its name and the fingerprint of its members'
 * key: `NAME~FINGERPRINT`. The fingerprint is the first 22 base64url characters (132 bits) of the Ed25519 public key
 * that only holders of the room's secret can derive, so a room at an address can only ever be joined, or set up, by
 * them: nobody can take a name first for another key.
 */
export const FINGERPRINT_LENGTH = 22;
const ADDRESS = /^([A-Za-z0-9_-]+)~([A-Za-z0-9_-]{22})$/;

export function roomAddress(room: string, publicKey: string): string {
  return `${room}~${publicKey.slice(0, FINGERPRINT_LENGTH)}`;
}

/** The name and fingerprint in a room's address, or why it is not one. */
export function parseRoomAddress(address: string, maxLength = MAX_ROOM_ID_LENGTH): { room: string; fingerprint: string } | string {
  const match = ADDRESS.exec(address);
  if (match === null) return checkRoomId(address.split("~")[0]!, maxLength) ?? "a room's address is its name, ~ and the 22-character fingerprint of its key";
  return checkRoomId(match[1]!, maxLength) ?? { room: match[1]!, fingerprint: match[2]! };
}

/** Longest `hello.profile`, in UTF-16 code units: a sealed name and colour need far less. */
export const MAX_PROFILE_LENGTH = 1024;

/** What a client signs to prove it holds the room's key: the room's address and the challenge of this connection. */
export const helloChallenge = (address: string, nonce: string) => `multiuser-chat hello\n${address}\n${nonce}`;

/**
 * What a client signs for its ticket, the proof a socket carries in its address so that the server turns a stranger
 * away before the room sees it: the room's address and the time the ticket was made, by the server's clock as far
 * as the client knows it.
 */
export const ticketText = (address: string, at: number) => `multiuser-chat ticket\n${address}\n${at}`;
/** How far a ticket's time may be from the server's, either way, in milliseconds. */
export const TICKET_WINDOW = 60_000;

/**
 * The heartbeat a client sends, and the answer, as exact texts: on Cloudflare the platform answers it without
 * waking the room (`setWebSocketAutoResponse`); elsewhere the reflector answers it itself.
 */
export const PING = '{"type":"ping"}';
export const PONG = '{"type":"pong"}';

/** Close code for a socket whose client resumed on a newer socket. */
export const CLOSE_REPLACED = 4000;
/** Close code for a connection to a room whose id is not a valid room id (after an error frame `bad-room`). */
export const CLOSE_BAD_ROOM = 4001;
/** Close code for a new client refused because the room holds `maxClients` clients (after an error frame `room-full`). */
export const CLOSE_ROOM_FULL = 4002;
/** Close code for a connection that kept sending above its rate limit (after its last `rate-limited` error frame). */
export const CLOSE_FLOODING = 4003;
/** Close code for a socket that did not say hello within `helloTimeout`. */
export const CLOSE_NO_HELLO = 4004;
/** Close code for a socket that sent nothing, heartbeats included, for `silenceTimeout`: its peer is gone. */
export const CLOSE_SILENT = 4005;
/** Close code for a hello that did not prove it holds the room's key (after an error frame `not-member`). */
export const CLOSE_NOT_MEMBER = 4006;
/** Close code for a socket refused because the room admits no more newcomers for now (error `busy`): try later. */
export const CLOSE_BUSY = 4007;
/** Close code for a connection that fell more than `maxLag` behind what it acknowledged: it resumes where it is. */
export const CLOSE_BEHIND = 4008;
/** Close code for a ticket whose time is too far from the server's (error `stale-ticket`, which says the time). */
export const CLOSE_STALE_TICKET = 4009;

/** An event in the room's total order. Stored in the log and reflected to every client. */
export type ReflectedEvent =
  | { type: "message"; seq: number; time: number; client: string; id: number; payload: string }
  /** `profile`: what the client's hello carried, sealed for the room's members (see `hello.profile`). */
  | { type: "user-enter"; seq: number; time: number; client: string; profile?: string }
  | { type: "user-exit"; seq: number; time: number; client: string };

export type EventType = ReflectedEvent["type"];

/** The first frame on a connection, and what follows it. */
export interface Welcome {
  type: "welcome";
  version: number;
  /** This connection's client id: the old one when `resumed`, else a new one. */
  client: string;
  /** Proves on a later connection that it is the same client (see `hello.resume`). Never shown to others. */
  secret: string;
  /** True when the client id and everything about the client carried over from an earlier connection. */
  resumed: boolean;
  /** Highest post id the reflector has sequenced for the client named in `hello.resume`; 0 when none or unknown. */
  acked: number;
  /** The reflector's current time; a replica advances to it once caught up. */
  time: number;
  /** How often the client sends a heartbeat (PING); a connection that leaves one unanswered is dead. */
  heartbeat: number;
  /** The connection's frame rate limit, which the client keeps below; null when there is none. */
  rate: { perSecond: number; burst: number } | null;
  /** The client's share of the room's posts now, which it keeps below; `budget` frames say when it changes. */
  budget: { perSecond: number; burst: number } | null;
  /** How long an event the reflector ordered may wait to be written to storage: a client keeps its posts that long. */
  writeInterval: number;
  /**
   * A snapshot to restore first, sent as `parts` `snapshot` frames right after this one; null when none is needed.
   * `hash` is what the majority of the members voted for at `seq`: the SHA-256 of the joined parts.
   */
  snapshot: { seq: number; parts: number; hash: string } | null;
  /** The events that follow (after the snapshot parts) are those after `from`, up to and including `last`. */
  from: number;
  last: number;
}

/** One vote per hash at a snapshot point: which clients reported it. */
export interface Vote {
  hash: string;
  clients: string[];
}

/**
 * The vote of more than half of `voters`, the members present at a snapshot point, if there is one: the room's state
 * there. A member that did not vote counts for no hash, so a lone vote never speaks for a room that stayed silent.
 */
export function majority(votes: Vote[], voters: number): Vote | undefined {
  return votes[0] !== undefined && votes[0].clients.length * 2 > voters ? votes[0] : undefined;
}

/** Frames the reflector sends. */
export type ServerFrame =
  | ReflectedEvent
  | { type: "challenge"; nonce: string }
  | Welcome
  | SnapshotPart
  | { type: "tick"; time: number }
  | { type: "pong" }
  | { type: "budget"; perSecond: number; burst: number }
  | { type: "mark"; id: string }
  | { type: "snapshot-due"; seq: number }
  | { type: "snapshot-request"; seq: number }
  | { type: "snapshot-stored"; seq: number }
  | { type: "divergence"; seq: number; voters: number; votes: Vote[] }
  | { type: "error"; code: ErrorCode; message: string; retry?: number; time?: number };

/** A piece of a snapshot: uploaded by a client when asked, sent to a client after its welcome. */
export interface SnapshotPart {
  type: "snapshot";
  seq: number;
  part: number;
  parts: number;
  data: string;
}

/**
 * Frames a client sends. Any of them may carry `client`, the id of the client sending it; the reflector never
 * needs it (it knows who is on each socket) but refuses a frame whose `client` names anyone else (`identity`).
 */
export type ClientFrame = (
  | { type: "hello"; version: number; key: string; proof: string; resume?: { client: string; secret: string; seq: number }; profile?: string }
  | { type: "publish"; id: number; payload: string }
  | { type: "hash"; seq: number; hash: string }
  | SnapshotPart
  | { type: "tick-request"; time: number }
  | { type: "ack"; mark: string }
  | { type: "ping" }
  /** `reload`: the page is being reloaded, and its client should stay away only briefly (`RELOAD_GRACE_MS`). */
  | { type: "leave"; reload?: true }
) & {
  client?: string;
  /** When the client sent the frame: milliseconds since it received its welcome, by its own clock. */
  t?: number;
};

/** Why the reflector refused a frame; every code is documented in `docs/protocol.md` and `docs/security.md`. */
export type ErrorCode =
  | "bad-frame"
  | "frame-too-large"
  | "version-mismatch"
  | "out-of-turn"
  | "rate-limited"
  | "out-of-order"
  | "identity"
  | "room-full"
  | "bad-room"
  | "not-member"
  | "stale-ticket"
  | "busy"
  | "over-budget"
  | "log-full"
  | "snapshot-too-large";

/** Raised for a frame that does not follow this protocol; `code` goes back to the sender in an error frame. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** Encodes an event once; the same text is sent to every client and kept for welcomes. */
export function encodeEvent(event: ReflectedEvent): string {
  return JSON.stringify(event);
}

export function encodeWelcome(welcome: Omit<Welcome, "type" | "version">): string {
  return JSON.stringify({ type: "welcome", version: PROTOCOL_VERSION, ...welcome } satisfies Welcome);
}

export function encodeSnapshotPart(seq: number, part: number, parts: number, data: string): string {
  return JSON.stringify({ type: "snapshot", seq, part, parts, data } satisfies SnapshotPart);
}

export function encodeChallenge(nonce: string): string {
  return JSON.stringify({ type: "challenge", nonce });
}

export function encodeTick(time: number): string {
  return JSON.stringify({ type: "tick", time });
}

/** The snapshot notices that carry only a sequence number. */
export function encodeSnapshotNotice(type: "snapshot-due" | "snapshot-request" | "snapshot-stored", seq: number): string {
  return JSON.stringify({ type, seq });
}

/** Hashes that differed at `seq`; `voters` is how many members were asked, voting or not. */
export function encodeDivergence(seq: number, voters: number, votes: Vote[]): string {
  return JSON.stringify({ type: "divergence", seq, voters, votes });
}

/**
 * A refusal; `retry` says in how many milliseconds the same frame would be taken, `time` is the server's clock (for
 * `stale-ticket`).
 */
export function encodeError(code: ErrorCode, message: string, { retry, time }: { retry?: number; time?: number } = {}): string {
  return JSON.stringify({ type: "error", code, message, retry, time });
}

/** A point in one connection's stream that the client acknowledges (`ack`) once it has read up to it. */
export function encodeMark(id: string): string {
  return JSON.stringify({ type: "mark", id });
}

export function encodeBudget(budget: { perSecond: number; burst: number }): string {
  return JSON.stringify({ type: "budget", perSecond: budget.perSecond, burst: budget.burst });
}

/** Several frames in one: a JSON array of them, in order. Every frame is an object, so a client tells a batch by its `[`. */
export function encodeBatch(frames: string[]): string {
  return `[${frames.join(",")}]`;
}

export function encodeClientFrame(frame: ClientFrame): string {
  return JSON.stringify(frame);
}

/**
 * Validates a frame from a client. Payloads and snapshot data stay opaque strings: the reflector never looks inside.
 * `maxLength` is the largest frame accepted, checked before parsing; it never exceeds MAX_FRAME_LENGTH.
 */
export function parseClientFrame(data: string | ArrayBuffer | ArrayBufferView, maxLength = MAX_FRAME_LENGTH): ClientFrame {
  if (typeof data !== "string") throw new ProtocolError("bad-frame", "binary frames are not part of this protocol; send JSON text");
  const limit = Math.min(maxLength, MAX_FRAME_LENGTH);
  if (data.length > limit) throw new ProtocolError("frame-too-large", `frame is ${data.length} characters; the limit is ${limit}`);
  let frame: unknown;
  try {
    frame = JSON.parse(data);
  } catch {
    throw new ProtocolError("bad-frame", "frame is not valid JSON");
  }
  if (typeof frame !== "object" || frame === null || Array.isArray(frame)) throw new ProtocolError("bad-frame", "frame must be a JSON object");
  const fields = frame as Record<string, unknown>;
  const parsed = parseFields(fields);
  // Checked after the type and fields, so that an unknown type is a bad frame whatever it claims.
  if (fields.t !== undefined) parsed.t = count(fields.t, `${parsed.type}.t`, 0);
  if (fields.client !== undefined) parsed.client = token(fields.client, `${parsed.type}.client`);
  return parsed;
}

function parseFields(fields: Record<string, unknown>): ClientFrame {
  switch (fields.type) {
    case "hello": {
      if (fields.version !== PROTOCOL_VERSION) {
        throw new ProtocolError("version-mismatch", `this reflector speaks protocol version ${PROTOCOL_VERSION}, not ${JSON.stringify(fields.version)}`);
      }
      const hello: Extract<ClientFrame, { type: "hello" }> = {
        type: "hello",
        version: PROTOCOL_VERSION,
        key: token(fields.key, "hello.key"),
        proof: token(fields.proof, "hello.proof"),
      };
      if (fields.resume !== undefined) {
        const resume = fields.resume as Record<string, unknown> | null;
        if (typeof resume !== "object" || resume === null) throw new ProtocolError("bad-frame", "hello.resume must be an object");
        hello.resume = {
          client: token(resume.client, "hello.resume.client"),
          secret: token(resume.secret, "hello.resume.secret"),
          seq: count(resume.seq, "hello.resume.seq", 0),
        };
      }
      if (fields.profile !== undefined) {
        if (typeof fields.profile !== "string" || fields.profile.length > MAX_PROFILE_LENGTH) {
          throw new ProtocolError("bad-frame", `hello.profile must be a string of at most ${MAX_PROFILE_LENGTH} characters`);
        }
        hello.profile = fields.profile;
      }
      return hello;
    }
    case "publish":
      if (typeof fields.payload !== "string") throw new ProtocolError("bad-frame", "publish.payload must be a string");
      return { type: "publish", id: count(fields.id, "publish.id", 1), payload: fields.payload };
    case "hash":
      return { type: "hash", seq: count(fields.seq, "hash.seq", 1), hash: token(fields.hash, "hash.hash") };
    case "snapshot": {
      const parts = count(fields.parts, "snapshot.parts", 1);
      if (parts > MAX_SNAPSHOT_PARTS) throw new ProtocolError("bad-frame", `snapshot.parts is ${parts}; a snapshot has at most ${MAX_SNAPSHOT_PARTS} parts`);
      const part = count(fields.part, "snapshot.part", 0);
      if (part >= parts) throw new ProtocolError("bad-frame", `snapshot.part ${part} is not below snapshot.parts ${parts}`);
      if (typeof fields.data !== "string") throw new ProtocolError("bad-frame", "snapshot.data must be a string");
      return { type: "snapshot", seq: count(fields.seq, "snapshot.seq", 1), part, parts, data: fields.data };
    }
    case "tick-request":
      return { type: "tick-request", time: count(fields.time, "tick-request.time", 1) };
    case "ack":
      return { type: "ack", mark: token(fields.mark, "ack.mark") };
    case "ping":
      return { type: "ping" };
    case "leave":
      if (fields.reload !== undefined && fields.reload !== true) throw new ProtocolError("bad-frame", "leave.reload must be true when present");
      return fields.reload === true ? { type: "leave", reload: true } : { type: "leave" };
    default:
      throw new ProtocolError("bad-frame", `unknown frame type ${JSON.stringify(fields.type)}`);
  }
}

/**
 * Splits a snapshot into parts whose frames stay within the frame limit, however much escaping JSON adds to them.
 * Joining the parts gives the text back.
 */
export function splitSnapshot(text: string): string[] {
  const parts: string[] = [];
  for (let start = 0; start < text.length; ) {
    let size = Math.min(SNAPSHOT_PART_LENGTH, text.length - start);
    while (JSON.stringify(text.slice(start, start + size)).length > SNAPSHOT_PART_LENGTH) size = Math.ceil(size / 2);
    parts.push(text.slice(start, start + size));
    start += size;
  }
  return parts.length > 0 ? parts : [""];
}

function token(value: unknown, name: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_TOKEN_LENGTH) {
    throw new ProtocolError("bad-frame", `${name} must be a string of 1 to ${MAX_TOKEN_LENGTH} characters`);
  }
  return value;
}

function count(value: unknown, name: string, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min)
    throw new ProtocolError("bad-frame", `${name} must be an integer of at least ${min}`);
  return value;
}

/** Parses what the reflector sent, a frame or a batch of them, in order. Throws on a version this client does not speak. */
export function parseServerFrames(data: string): ServerFrame[] {
  const parsed = JSON.parse(data) as ServerFrame | ServerFrame[];
  const frames = Array.isArray(parsed) ? parsed : [parsed];
  for (const frame of frames) {
    if (frame.type === "welcome" && frame.version !== PROTOCOL_VERSION) {
      throw new Error(`reflector speaks protocol version ${frame.version}; this client speaks ${PROTOCOL_VERSION}`);
    }
  }
  return frames;
}

/**
 * The wire format between the reflector and its clients: the only module that builds or parses frames.
 * Every frame is one JSON text message; `docs/protocol.md` documents each of them.
 */

/** Bumped whenever a frame changes shape; a client and a reflector speaking different versions refuse each other. */
export const PROTOCOL_VERSION = 1;

/**
 * Largest client frame the reflector accepts, in UTF-16 code units, as received. Storage keeps a string in at most
 * two bytes per code unit, and re-encoding a payload never makes it longer than the client's own escaped form, so
 * every stored event stays below PartyKit's 128 KiB value limit whatever characters the payload holds.
 */
export const MAX_FRAME_LENGTH = 60 * 1024;

/** An event in the room's total order. Stored in the log and reflected to every client. */
export type ReflectedEvent =
  | { type: "message"; seq: number; time: number; client: string; payload: string }
  | { type: "user-enter"; seq: number; time: number; client: string }
  | { type: "user-exit"; seq: number; time: number; client: string };

export type EventType = ReflectedEvent["type"];

/** Frames the reflector sends. */
export type ServerFrame =
  | ReflectedEvent
  | { type: "welcome"; version: number; room: string; client: string; time: number; events: ReflectedEvent[] }
  | { type: "tick"; time: number }
  | { type: "error"; code: ErrorCode; message: string };

/** Frames a client sends. */
export type ClientFrame = { type: "publish"; payload: string };

export type ErrorCode = "bad-frame" | "frame-too-large";

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

/**
 * Encodes a welcome around events that are already encoded, so a join costs one string concatenation
 * per stored event instead of re-serializing the log.
 */
export function encodeWelcome(welcome: { room: string; client: string; time: number }, encodedEvents: readonly string[]): string {
  const head = JSON.stringify({ type: "welcome", version: PROTOCOL_VERSION, room: welcome.room, client: welcome.client, time: welcome.time });
  return `${head.slice(0, -1)},"events":[${encodedEvents.join(",")}]}`;
}

export function encodeTick(time: number): string {
  return JSON.stringify({ type: "tick", time });
}

export function encodeError(code: ErrorCode, message: string): string {
  return JSON.stringify({ type: "error", code, message });
}

export function encodePublish(payload: string): string {
  return JSON.stringify({ type: "publish", payload } satisfies ClientFrame);
}

/** Validates a frame from a client. The payload stays an opaque string: the reflector never looks inside it. */
export function parseClientFrame(data: string | ArrayBuffer | ArrayBufferView): ClientFrame {
  if (typeof data !== "string") throw new ProtocolError("bad-frame", "binary frames are not part of this protocol; send JSON text");
  if (data.length > MAX_FRAME_LENGTH) throw new ProtocolError("frame-too-large", `frame is ${data.length} characters; the limit is ${MAX_FRAME_LENGTH}`);
  let frame: unknown;
  try {
    frame = JSON.parse(data);
  } catch {
    throw new ProtocolError("bad-frame", "frame is not valid JSON");
  }
  if (typeof frame !== "object" || frame === null || Array.isArray(frame)) throw new ProtocolError("bad-frame", "frame must be a JSON object");
  const { type, payload } = frame as Record<string, unknown>;
  if (type !== "publish") throw new ProtocolError("bad-frame", `unknown frame type ${JSON.stringify(type)}`);
  if (typeof payload !== "string") throw new ProtocolError("bad-frame", "publish.payload must be a string");
  return { type, payload };
}

/** Parses a frame from the reflector. Throws on anything this client version does not understand. */
export function parseServerFrame(data: string): ServerFrame {
  const frame = JSON.parse(data) as ServerFrame;
  if (frame.type === "welcome" && frame.version !== PROTOCOL_VERSION) {
    throw new Error(`reflector speaks protocol version ${frame.version}; this client speaks ${PROTOCOL_VERSION}`);
  }
  return frame;
}

/**
 * The load generator's clients: a thin client for each server that speaks just enough of its protocol, and the
 * bookkeeping that checks every delivery for loss, order and duplicates and measures its latency.
 *
 * Both servers get the same load from the same kind of client, so that a ratio compares servers, not clients.
 * The reflector's client says hello, answers snapshot rounds like a real replica (a constant hash, a tiny
 * snapshot) and numbers its posts; the baseline's client just sends the payload.
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { RoomKey } from "../component/room-key.js";
import { sha256Hex } from "../common/crypto.js";
import { encodeClientFrame, helloChallenge, parseServerFrames, PROTOCOL_VERSION, type ServerFrame } from "../common/protocol.js";
import { memberUrl } from "../test/support/ticket.js";

/** About the size of a sealed chat post: "e1." + IV + AES-GCM ciphertext of a short message, base64url. */
export const PAYLOAD_LENGTH = 120;

export type ServerKind = "reflector" | "baseline";

export interface LoadClient {
  publish(payload: string): void;
  /** Error frames the server sent after the welcome: the bench stays within every limit, so each is a defect. */
  readonly refusals: string[];
  close(): Promise<void>;
}

/** Called for each message a client receives, with its sequence number and payload. */
export type OnDelivery = (seq: number, payload: string) => void;

/** The key of each room the bench opens: the reflector's clients must prove they hold it; the baseline's need not. */
const roomKeys = new Map<string, Promise<RoomKey>>();
/** What the reflector's clients upload as the snapshot, and vote with: the reflector stores an upload only if it has that hash. */
const SNAPSHOT = "bench";
const snapshotHash = sha256Hex(SNAPSHOT);

export async function connectClient(kind: ServerKind, host: string, room: string, onDelivery: OnDelivery): Promise<LoadClient> {
  if (!roomKeys.has(room)) roomKeys.set(room, RoomKey.derive(room, undefined));
  const key = await roomKeys.get(room)!;
  const query = { _pk: randomUUID() };
  // The reflector's door wants a ticket; the baseline room takes any socket.
  const socket = new WebSocket(kind === "reflector" ? await memberUrl(host, key, { query }) : `ws://${host}/parties/main/${room}?${new URLSearchParams(query)}`);
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  // A socket that fails later shows up as deliveries missing from the checks, not as a crash of the bench.
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  // wrangler dev answers a close frame only 10-20 s later, and ws would wait 30 s for it: cut the connection after 1 s.
  const close = async () => {
    socket.close();
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1000))]);
    socket.terminate();
    await closed;
  };
  if (kind === "baseline") {
    socket.on("message", (data) => {
      const { seq, payload } = JSON.parse(String(data)) as { seq: number; payload: string };
      onDelivery(seq, payload);
    });
    return { publish: (payload) => socket.send(payload), refusals: [], close };
  }

  let nextId = 1;
  const refusals: string[] = [];
  const hash = await snapshotHash;
  const welcomed = new Promise<void>((resolve, reject) => {
    const handle = async (frame: ServerFrame) => {
      switch (frame.type) {
        case "challenge": {
          const proof = await key.prove(helloChallenge(key.address, frame.nonce));
          return socket.send(encodeClientFrame({ type: "hello", version: PROTOCOL_VERSION, key: key.publicKey, proof }));
        }
        case "welcome":
          return resolve();
        case "message":
          return onDelivery(frame.seq, frame.payload);
        case "mark":
          return socket.send(encodeClientFrame({ type: "ack", mark: frame.id }));
        case "snapshot-due":
          return socket.send(encodeClientFrame({ type: "hash", seq: frame.seq, hash }));
        case "snapshot-request":
          return socket.send(encodeClientFrame({ type: "snapshot", seq: frame.seq, part: 0, parts: 1, data: SNAPSHOT }));
        case "error":
          refusals.push(`${frame.code}: ${frame.message}`);
          return reject(new Error(`the reflector refused a frame: ${frame.code}: ${frame.message}`));
      }
    };
    // A batch holds several frames, in order.
    socket.on("message", (data) => {
      for (const frame of parseServerFrames(String(data))) void handle(frame);
    });
  });
  await welcomed;
  const leave = async () => {
    // So that the room sees the client go at once rather than after a grace period.
    socket.send(encodeClientFrame({ type: "leave" }));
    await close();
  };
  return { publish: (payload) => socket.send(encodeClientFrame({ type: "publish", id: nextId++, payload })), refusals, close: leave };
}

/** A payload naming its sender and its number among that sender's posts, padded to PAYLOAD_LENGTH. */
export const makePayload = (sender: number, n: number) => `${sender}:${n}:`.padEnd(PAYLOAD_LENGTH, "x");

function readPayload(payload: string): { sender: number; n: number } {
  const [sender, n] = payload.split(":", 2);
  return { sender: Number(sender), n: Number(n) };
}

/**
 * Every receiver must see every post exactly once, each sender's posts in the order sent, and sequence numbers
 * rising. Sending and receiving happen in this one process, so one clock measures the latency.
 */
export class DeliveryCheck {
  /** sentAt[sender][n]: when post n of a sender was handed to its socket. */
  private readonly sentAt: number[][];
  private readonly lastSeq: number[];
  /** next[receiver][sender]: the post number this receiver expects next from that sender. */
  private readonly next: number[][];
  readonly latencies: number[] = [];
  deliveries = 0;
  duplicates = 0;
  reordered = 0;

  constructor(
    senders: number,
    private readonly receivers: number,
  ) {
    this.sentAt = Array.from({ length: senders }, () => []);
    this.lastSeq = new Array(receivers).fill(0);
    this.next = Array.from({ length: receivers }, () => new Array(senders).fill(0));
  }

  /** Records a post as sent now and returns its payload. */
  send(sender: number): string {
    const n = this.sentAt[sender]!.length;
    this.sentAt[sender]!.push(performance.now());
    return makePayload(sender, n);
  }

  sent(sender: number): number {
    return this.sentAt[sender]!.length;
  }

  /** The delivery handler for one receiver. */
  receiver(index: number): OnDelivery {
    return (seq, payload) => {
      const now = performance.now();
      this.deliveries++;
      if (seq <= this.lastSeq[index]!) this.reordered++;
      this.lastSeq[index] = seq;
      const { sender, n } = readPayload(payload);
      const expected = this.next[index]![sender]!;
      if (n < expected) this.duplicates++;
      else {
        if (n > expected) this.reordered++;
        this.next[index]![sender] = n + 1;
      }
      this.latencies.push(now - this.sentAt[sender]![n]!);
    };
  }

  /** A sender's posts that one receiver has not received yet. */
  inFlight(receiver: number, sender: number): number {
    return this.sentAt[sender]!.length - this.next[receiver]![sender]!;
  }

  /** Posts sent but not (yet) received, summed over receivers. */
  get missing(): number {
    let missing = 0;
    for (let receiver = 0; receiver < this.receivers; receiver++) {
      this.sentAt.forEach((sent, sender) => (missing += sent.length - this.next[receiver]![sender]!));
    }
    return missing;
  }

  /** Waits until nothing is missing, or `timeout` ms have passed; returns what is still missing. */
  async drain(timeout = 10_000): Promise<number> {
    const deadline = performance.now() + timeout;
    while (this.missing > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    return this.missing;
  }
}

/** The p-th percentile (0-100) of some numbers, by nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

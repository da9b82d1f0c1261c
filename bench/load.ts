/**
 * The load generator's clients: a thin client for each server that speaks just enough of its protocol, and the
 * bookkeeping that checks every delivery for loss, order and duplicates and measures its latency.
 *
 * Both servers get the same load from the same kind of client, so that a ratio compares servers, not clients.
 * The reflector's client says hello, answers snapshot rounds like a real replica (a constant hash, a tiny
 * snapshot) and numbers its posts; the baseline's client just sends the payload.
 *
 * `Member` is the reflector's client for the scenarios under the production limits (worst load, stalled readers):
 * it lives within them the way a real client must, resending what the room refused and coming back when dropped.
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { RoomKey } from "../component/room-key.js";
import { sha256Hex } from "../common/crypto.js";
import {
  encodeClientFrame,
  helloChallenge,
  parseServerFrames,
  PROTOCOL_VERSION,
  type ClientFrame,
  type ServerFrame,
  type Welcome,
} from "../common/protocol.js";
import { TokenBucket } from "../common/token-bucket.js";
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
const SNAPSHOT_HASH = await sha256Hex(SNAPSHOT);

function roomKey(room: string): Promise<RoomKey> {
  if (!roomKeys.has(room)) roomKeys.set(room, RoomKey.derive(room, undefined));
  return roomKeys.get(room)!;
}

/** A socket, and how to close it without waiting for wrangler dev. */
interface OpenSocket {
  socket: WebSocket;
  /** Resolves once the socket is open; rejects if it fails first. */
  opened: Promise<void>;
  /** Resolves with the close code once the socket has closed, whoever closed it. */
  closed: Promise<number>;
  close(): Promise<void>;
}

/**
 * Starts opening a socket. Its owner must listen for messages before it awaits `opened`: the server's first frame
 * may come in the same read as the handshake's answer, and then ws emits it in the same tick as `open`. It offers no
 * permessage-deflate, which browsers offer: ws inflates the messages of all the sockets of a process in one queue,
 * and with 99 streams at 600 events a second this core fell seconds behind and set the pace instead of the server
 * (docs/performance.md, issue 16). The deployed Worker compresses nothing either (`no_web_socket_compression`).
 */
function openSocket(url: string): OpenSocket {
  const socket = new WebSocket(url, { perMessageDeflate: false });
  const closed = new Promise<number>((resolve) => socket.once("close", (code) => resolve(code)));
  const opened = new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  // A socket that fails later shows up as deliveries missing from the checks, not as a crash of the bench.
  void opened.then(
    () => socket.on("error", () => {}),
    () => {},
  );
  // wrangler dev answers a close frame only 10-20 s later, and ws would wait 30 s for it: cut the connection after 1 s.
  const close = async () => {
    socket.close();
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1000))]);
    socket.terminate();
    await closed;
  };
  return { socket, opened, closed, close };
}

/**
 * Answers what every bench member of a reflector room answers alike: its challenge with a hello signed with the
 * room's key (resuming `resume`, if given), marks with acks, and snapshot rounds with the one hash and text all the
 * load clients agree on. Returns false for any other frame.
 */
function answerRoutine(
  frame: ServerFrame,
  key: RoomKey,
  send: (frame: ClientFrame) => void,
  resume?: Extract<ClientFrame, { type: "hello" }>["resume"],
): boolean {
  switch (frame.type) {
    case "challenge":
      void key
        .prove(helloChallenge(key.address, frame.nonce))
        .then((proof) => send({ type: "hello", version: PROTOCOL_VERSION, key: key.publicKey, proof, ...(resume === undefined ? {} : { resume }) }));
      return true;
    case "mark":
      send({ type: "ack", mark: frame.id });
      return true;
    case "snapshot-due":
      send({ type: "hash", seq: frame.seq, hash: SNAPSHOT_HASH });
      return true;
    case "snapshot-request":
      send({ type: "snapshot", seq: frame.seq, part: 0, parts: 1, data: SNAPSHOT });
      return true;
    default:
      return false;
  }
}

export async function connectClient(kind: ServerKind, host: string, room: string, onDelivery: OnDelivery): Promise<LoadClient> {
  const key = await roomKey(room);
  const query = { _pk: randomUUID() };
  // The reflector's door wants a ticket; the baseline room takes any socket.
  const { socket, opened, close } = openSocket(
    kind === "reflector" ? await memberUrl(host, key, { query }) : `ws://${host}/parties/main/${room}?${new URLSearchParams(query)}`,
  );
  if (kind === "baseline") {
    socket.on("message", (data) => {
      const { seq, payload } = JSON.parse(String(data)) as { seq: number; payload: string };
      onDelivery(seq, payload);
    });
    await opened;
    return { publish: (payload) => socket.send(payload), refusals: [], close };
  }

  let nextId = 1;
  const refusals: string[] = [];
  const send = (frame: ClientFrame) => socket.send(encodeClientFrame(frame));
  const welcomed = new Promise<void>((resolve, reject) => {
    const handle = (frame: ServerFrame) => {
      if (answerRoutine(frame, key, send)) return;
      switch (frame.type) {
        case "welcome":
          return resolve();
        case "message":
          return onDelivery(frame.seq, frame.payload);
        case "error":
          refusals.push(`${frame.code}: ${frame.message}`);
          return reject(new Error(`the reflector refused a frame: ${frame.code}: ${frame.message}`));
      }
    };
    // A batch holds several frames, in order.
    socket.on("message", (data) => {
      for (const frame of parseServerFrames(String(data))) handle(frame);
    });
  });
  await opened;
  await welcomed;
  const leave = async () => {
    // So that the room sees the client go at once rather than after a grace period.
    socket.send(encodeClientFrame({ type: "leave" }));
    await close();
  };
  return { publish: (payload) => socket.send(encodeClientFrame({ type: "publish", id: nextId++, payload })), refusals, close: leave };
}

/**
 * Refusals of a post after which a member sends its posts again: the room did not take them. Not `out-of-order`: a
 * member never skips an id, so that refusal only follows the refusal of an earlier post, which already set the
 * resend; taken as a new one it would start another wait of RESEND_DELAY once the first had ended.
 */
const RESEND_CODES: ReadonlySet<string> = new Set(["over-budget", "log-full", "rate-limited"]);
/** How long to wait before sending again after a refusal that says no `retry`, as Session does. */
const RESEND_DELAY = 1000;
/** Reconnection delays, as Session's partysocket: from 250 ms, doubling, up to 4 s. */
const RECONNECT_MIN = 250;
const RECONNECT_MAX = 4000;
/**
 * Posts a member holds that it has not seen come back. A member that reads sees its posts come back long before it
 * has this many; one that does not read never does, and stops posting here, so that all it sent before it stalled
 * can be sent again once it reads.
 */
const MEMBER_WINDOW = 10;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A post a member made and has not yet seen in the room's order: its payload (from a DeliveryCheck) and its id now. */
interface Post {
  id: number;
  payload: string;
}

/**
 * A load client that is a legal member of a reflector room under the production limits. It gets in with a ticket and
 * a signed hello, acknowledges marks, votes and uploads as every bench client does (answerRoutine), and stamps its
 * frames with `t`, so that frames that wait while the server is busy count as sent when they were. It paces its posts
 * by its connection's rate limit, evenly and a little below it (as Session paces), not by its share of the room: so
 * it always wants more than its share, and the room refuses the rest. It keeps every post until it sees it in the
 * order; a refused post goes again after the refusal's `retry`, with the posts after it, and nothing new goes out
 * before it (posts are ordered by id). A dropped connection comes back within 250 ms to 4 s, resuming with the last
 * event read, or, after its grace period, as a new client; either way its welcome's `acked` says which posts the room
 * has, and the rest go again (docs/protocol.md#publish).
 *
 * The scenario drives it: `pump` sends what it may, `stall` stops reading its socket (no frame is read, so no mark is
 * acknowledged) and `wake` reads again.
 */
export class Member {
  /** Error frames received, by code (`busy` at the door included). */
  readonly refusals = new Map<string, number>();
  /** The connections the server closed, in order: the close code, and when (performance.now()) the member read it. */
  readonly closes: { code: number; at: number }[] = [];
  /** The highest sequence number it has read. */
  lastSeq = 0;
  private outbox: Post[] = [];
  private nextId = 1;
  /** The highest post id sent on this connection since the last refusal. */
  private sentUpTo = 0;
  /** No post goes out before this (performance.now()): a refusal's `retry`. */
  private waitUntil = 0;
  private identity: { client: string; secret: string } | undefined;
  private connection: OpenSocket | undefined;
  /** When the current connection's welcome arrived (performance.now()); undefined while it has none. */
  private welcomedAt: number | undefined;
  /** Its posts' pace: 90% of its rate limit, one at a time. */
  private pace: TokenBucket | undefined;
  private paused = false;
  private leaving = false;

  private constructor(
    private readonly host: string,
    private readonly key: RoomKey,
    /** Its number among the DeliveryCheck's senders. */
    private readonly sender: number,
    private readonly check: DeliveryCheck,
    /** Where in its pace's interval its first post falls (0 to 1), so that members do not all post at once. */
    private readonly phase: number,
  ) {}

  /** Joins `room` as sender `sender` of `check`, trying again while the room turns newcomers away. */
  static async join(host: string, room: string, sender: number, check: DeliveryCheck, phase: number): Promise<Member> {
    const member = new Member(host, await roomKey(room), sender, check, phase);
    await member.connect();
    return member;
  }

  /** Posts it made that it has not seen in the order yet. */
  get pending(): number {
    return this.outbox.length;
  }

  /** Sends its next post if its pace and the room allow: the oldest not sent since the last refusal, or, if `create`, a new one. */
  pump(now: number, create: boolean): void {
    if (this.welcomedAt === undefined || now < this.waitUntil || this.pace!.waitTime(now) > 0) return;
    let post = this.outbox.find((waiting) => waiting.id > this.sentUpTo);
    if (post === undefined) {
      if (!create || this.outbox.length >= MEMBER_WINDOW) return;
      post = { id: this.nextId++, payload: this.check.send(this.sender) };
      this.outbox.push(post);
    }
    this.pace!.take(now);
    this.send({ type: "publish", id: post.id, payload: post.payload });
    this.sentUpTo = post.id;
  }

  /** Stops reading: frames wait in the socket, and no mark is acknowledged. It still posts what it may. */
  stall(): void {
    this.paused = true;
    this.connection?.socket.pause();
  }

  wake(): void {
    this.paused = false;
    this.connection?.socket.resume();
  }

  async leave(): Promise<void> {
    this.leaving = true;
    // So that the room sees it go at once rather than after a grace period.
    if (this.welcomedAt !== undefined) this.send({ type: "leave" });
    await this.connection?.close();
  }

  /** Opens connections until one is welcomed: a newcomer the room turns away (`busy`) tries again later. */
  private async connect(): Promise<void> {
    for (let delay = RECONNECT_MIN; !this.leaving; delay = Math.min(2 * delay, RECONNECT_MAX)) {
      const connection = openSocket(await memberUrl(this.host, this.key, { query: { _pk: randomUUID() } }));
      this.connection = connection;
      const welcomed = new Promise<boolean>((resolve) => {
        connection.socket.on("message", (data) => {
          for (const frame of parseServerFrames(String(data))) this.handle(frame, () => resolve(true));
        });
        void connection.closed.then(() => resolve(false));
      });
      try {
        await connection.opened;
      } catch {
        await sleep(delay);
        continue;
      }
      if (this.paused) connection.socket.pause();
      if (await welcomed) {
        void connection.closed.then((code) => this.dropped(connection, code));
        return;
      }
      await sleep(delay);
    }
  }

  /** The server closed a welcomed connection: come back, as Session does. */
  private dropped(connection: OpenSocket, code: number): void {
    if (connection !== this.connection || this.leaving) return;
    this.closes.push({ code, at: performance.now() });
    this.welcomedAt = undefined;
    void sleep(RECONNECT_MIN).then(() => this.connect());
  }

  private handle(frame: ServerFrame, welcomed: () => void): void {
    const resume = this.identity === undefined ? undefined : { ...this.identity, seq: this.lastSeq };
    if (answerRoutine(frame, this.key, (reply) => this.send(reply), resume)) return;
    switch (frame.type) {
      case "welcome":
        this.welcome(frame);
        return welcomed();
      case "message":
        if (frame.client === this.identity?.client) this.confirm(frame.id);
        this.lastSeq = Math.max(this.lastSeq, frame.seq);
        return;
      case "user-enter":
      case "user-exit":
        this.lastSeq = Math.max(this.lastSeq, frame.seq);
        return;
      case "error":
        return this.refused(frame);
    }
  }

  /** Posts the room has leave the outbox; a new client id numbers the rest afresh from 1, and all go again. */
  private welcome(welcome: Welcome): void {
    this.confirm(welcome.acked);
    if (!welcome.resumed) {
      for (const [index, post] of this.outbox.entries()) post.id = index + 1;
      this.nextId = this.outbox.length + 1;
    }
    this.identity = { client: welcome.client, secret: welcome.secret };
    this.sentUpTo = 0;
    this.waitUntil = 0;
    const now = performance.now();
    this.welcomedAt = now;
    this.pace ??= new TokenBucket(0.9 * (welcome.rate?.perSecond ?? Infinity), 1, now, this.phase);
  }

  /** Its posts up to `id` are in the order. */
  private confirm(id: number): void {
    let done = 0;
    while (done < this.outbox.length && this.outbox[done]!.id <= id) done++;
    this.outbox.splice(0, done);
  }

  private refused(frame: Extract<ServerFrame, { type: "error" }>): void {
    this.refusals.set(frame.code, (this.refusals.get(frame.code) ?? 0) + 1);
    if (!RESEND_CODES.has(frame.code)) return;
    // Every post not yet seen in the order goes again, in order, once the room would take it: it drops those it has.
    this.sentUpTo = 0;
    const now = performance.now();
    if (now >= this.waitUntil) this.waitUntil = now + (frame.retry ?? RESEND_DELAY);
  }

  /** Sends a frame stamped with when it was sent since the welcome, as Session does; before a welcome, without. */
  private send(frame: ClientFrame): void {
    const t = this.welcomedAt === undefined ? undefined : Math.max(0, Math.round(performance.now() - this.welcomedAt));
    this.connection?.socket.send(encodeClientFrame(t === undefined ? frame : { ...frame, t }));
  }
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
      for (const [sender, sent] of this.sentAt.entries()) missing += sent.length - this.next[receiver]![sender]!;
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

/**
 * Issue 16's scenarios under the production limits: a room full of legal members posting as fast as their rate
 * limit lets them ("worst load"), and the same with half of them not reading ("stalled readers"). The server runs with
 * the default settings (or another ROOM_RATE, for the study of that default); the bench measures what the room's
 * workerd holds in memory, what a real Session posting among them sees, and whether every post gets in exactly once.
 */
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { CHAT_SCOPE, ChatModel } from "../component/chat-model.js";
import { Session } from "../component/session.js";
import { parseServerFrames, type ServerFrame } from "../common/protocol.js";
import { DEFAULT_SETTINGS } from "../party/settings.js";
import { TokenBucket } from "../common/token-bucket.js";
import type { HeapUsage, IsolateHeap } from "./isolate-heap.js";
import { DeliveryCheck, Member, percentile, type OnDelivery } from "./load.js";
import { cpuMicros, rssBytes } from "./server-process.js";

/** How long the load clients post. */
export const LOAD_SECONDS = 30;
/** How often the honest client posts, a second. */
export const HONEST_RATE = 5;
/** How long after the load the scenario waits for every post to be ordered and received before it counts what is not. */
export const END_SECONDS = 60;
/** How often memory is sampled, and the load clients are given their turn to post. */
const SAMPLE_MS = 200;
/** Memory is reported as the most in each stretch of this long, so that growth that goes on shows as such. */
export const WINDOW_SECONDS = 10;
const PUMP_MS = 5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A WebSocket class that shows `watch` every frame its sockets receive, a batch's one by one, before their owner sees them. */
export function frameWatchingWebSocket(watch: (frame: ServerFrame) => void) {
  return class FrameWatchingWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.on("message", (data: Buffer) => {
        for (const frame of parseServerFrames(String(data))) watch(frame);
      });
    }
  };
}

/**
 * The honest client: a real Session with the chat model, as a browser runs it, pacing its posts by its share of the
 * room. Its round trip runs from `publish` to the moment the session sees the post come back in the order (its
 * outbox shrinks). Its socket also shows the bench every event it receives: the load clients' posts go to a
 * DeliveryCheck, its own are counted, and `lastSeq` says how far its stream has come.
 */
class HonestClient {
  /** Round trips of the posts that came back, in ms. */
  readonly latencies: number[] = [];
  /** When each post was published (performance.now()), by its number. */
  private readonly publishedAt: number[] = [];
  private acknowledged = 0;
  /** Its own posts in the order, by client id and post id, with their sequence number: one ordered twice is a duplicate. */
  private readonly own = new Map<string, number>();
  private readonly ownIds = new Set<string>();
  duplicates = 0;
  lastSeq = 0;
  divergences = 0;
  /** Refusals the reflector sent it, by code. */
  readonly refusals = new Map<string, number>();

  private constructor(
    private readonly session: Session,
    private readonly onDelivery: OnDelivery,
  ) {
    session.addEventListener("pending", () => {
      const now = performance.now();
      const acknowledged = this.publishedAt.length - session.pending.length;
      while (this.acknowledged < acknowledged) this.latencies.push(now - this.publishedAt[this.acknowledged++]!);
    });
    session.addEventListener("divergence", () => this.divergences++);
    session.addEventListener("reflector-error", (event) => {
      const { code } = (event as CustomEvent<{ code: string }>).detail;
      this.refusals.set(code, (this.refusals.get(code) ?? 0) + 1);
    });
  }

  static async join(host: string, room: string, onDelivery: OnDelivery): Promise<HonestClient> {
    let honest: HonestClient | undefined;
    // Frames reach the watcher before the session: the welcome names its client id before its catch-up arrives.
    const watching = frameWatchingWebSocket((frame) => honest?.watch(frame));
    const session = Session.join({ host, room, model: ChatModel, WebSocket: watching });
    honest = new HonestClient(session, onDelivery);
    await session.whenReady();
    return honest;
  }

  /** Posts one line to the chat, as the view does. */
  post(): void {
    this.publishedAt.push(performance.now());
    this.session.publish(CHAT_SCOPE, "post", { text: `honest post ${this.publishedAt.length}` });
  }

  get published(): number {
    return this.publishedAt.length;
  }

  /** Posts it published that it has not seen in the order yet. */
  get pending(): number {
    return this.session.pending.length;
  }

  /** Its own posts the room ordered, each counted once. */
  get ordered(): number {
    return this.own.size;
  }

  /** Round trips with the posts still pending counted as lasting until `now`: at least that long. */
  roundTrips(now: number): { values: number[]; censored: number; shortestCensored: number } {
    const waiting = this.publishedAt.slice(this.acknowledged).map((at) => now - at);
    return { values: [...this.latencies, ...waiting], censored: waiting.length, shortestCensored: Math.min(...waiting) };
  }

  leave(): void {
    this.session.leave();
  }

  private watch(frame: ServerFrame): void {
    if (frame.type === "welcome") this.ownIds.add(frame.client);
    if (frame.type !== "message" && frame.type !== "user-enter" && frame.type !== "user-exit") return;
    // A catch-up after a reconnection may repeat events: the room's order is what came first.
    if (frame.seq <= this.lastSeq) return;
    this.lastSeq = frame.seq;
    if (frame.type !== "message") return;
    if (!this.ownIds.has(frame.client)) return this.onDelivery(frame.seq, frame.payload);
    const key = `${frame.client} ${frame.id}`;
    if (this.own.has(key)) this.duplicates++;
    else this.own.set(key, frame.seq);
  }
}

/**
 * The honest Session votes its real state's hash at each snapshot point and the load clients the bench's agreed one
 * (bench/load.ts), so every round ends in a divergence that the session logs with all the votes, and a share that
 * shrinks while the room fills may get a post refused, which it logs too. Both are counted by the HonestClient;
 * these lines alone are kept off the bench's output while `run` runs.
 */
async function withSessionLogsCounted<T>(run: () => Promise<T>): Promise<T> {
  const { error, warn } = console;
  const expected = (args: unknown[]) => typeof args[0] === "string" && /^multiuser-chat: (replicas of room|the reflector refused a frame)/.test(args[0]);
  console.error = (...args: unknown[]) => void (expected(args) || error(...args));
  console.warn = (...args: unknown[]) => void (expected(args) || warn(...args));
  try {
    return await run();
  } finally {
    Object.assign(console, { error, warn });
  }
}

export interface WorstLoadOptions {
  host: string;
  /** The rooms' workerd and wrangler's proxy, whose memory and CPU are read. */
  workerd: number;
  proxy: number;
  /** The rooms' isolate's heap, read during the load and at the end; none if the inspector could not be reached. */
  heap: IsolateHeap | undefined;
  room: string;
  /** The room's share of posts a second, as the server runs with it. */
  roomRate: number;
  /** Load clients that stop reading when the load starts. */
  stalled: number;
  progress: (text: string) => void;
}

export interface WorstLoad {
  loadClients: number;
  stalled: number;
  /**
   * Resident memory of each process: before the load; the most it held in each WINDOW_SECONDS of the load and then
   * after the load, up to the end; and at the end.
   */
  memory: Record<"workerd" | "proxy", { before: number; windows: number[]; after: number }>;
  /**
   * The rooms' isolate's JavaScript heap: the reading during the load that found the most used, and what was used
   * after a full collection at the end. Either is missing if the inspector did not give it (the progress says why).
   */
  heap: { peak: HeapUsage | undefined; usedAfterCollection: number | undefined };
  /** CPU during the load, in µs, of the rooms' workerd, the proxy and the load generator (this process). */
  cpuMicros: { workerd: number; proxy: number; generator: number };
  /** The honest client's round trips; `censored` posts had not come back by the end, the soonest of them after `shortestCensored` ms. */
  honest: { p50: number; p99: number; published: number; censored: number; shortestCensored: number; refusals: Map<string, number>; divergences: number };
  /** Events the room ordered during the load, a second (from the honest client's stream). */
  eventsPerSecond: number;
  /** Refusals the reading load clients received during the load, by code, a second. */
  refusalsPerSecond: Map<string, number>;
  /** Posts that were not ordered exactly once by the end: not ordered and no longer held by their client, still held, or ordered twice. */
  posts: { lost: number; queued: number; duplicated: number; total: number };
  /** Seconds from the load's end until the honest client had every event that had been ordered by then. */
  drainSeconds: number | undefined;
  /** Seconds from the load's end until every post was ordered and the honest client had them all; undefined if not by END_SECONDS. */
  endSeconds: number | undefined;
  /**
   * The load clients' connections the room closed, by close code: when each client read the close, in seconds from the
   * load's start (a stalled client reads it only when it reads again). And how many stalled clients it closed.
   */
  closes: Map<number, number[]>;
  stalledClosed: number;
}

/**
 * The room's worst legal load: MAX_CLIENTS clients, of which one is the honest Session posting HONEST_RATE times a
 * second and the rest Members posting as fast as their rate limit lets them, for LOAD_SECONDS; `stalled` of the
 * Members (every other one) stop reading when the load starts and read again when it ends. Then everyone goes on until
 * every post is in the order and the honest client has it, or END_SECONDS have passed.
 */
export async function worstLoad(options: WorstLoadOptions): Promise<WorstLoad> {
  return withSessionLogsCounted(async () => {
    const { host, room, progress } = options;
    const loadClients = DEFAULT_SETTINGS.maxClients - 1;
    const check = new DeliveryCheck(loadClients, 1);
    const honest = await HonestClient.join(host, room, check.receiver(0));
    const members = await joinMembers(host, room, loadClients, check, progress);
    const stalled = members.filter((_, index) => index % 2 === 0).slice(0, options.stalled);
    await sleep(2000); // the joins' last broadcasts and budget frames
    try {
      return await measure(options, honest, members, stalled, check);
    } finally {
      honest.leave();
      await Promise.all(members.map((member) => member.leave()));
    }
  });
}

/**
 * Joins `count` Members at the pace the room admits newcomers (JOIN_BURST at once, then JOIN_RATE a second; the honest
 * client took the first place), so that the door is not hammered while the room fills; one turned away tries again.
 */
async function joinMembers(host: string, room: string, count: number, check: DeliveryCheck, progress: (text: string) => void): Promise<Member[]> {
  const { joinRate, joinBurst } = DEFAULT_SETTINGS;
  const door = new TokenBucket(joinRate, joinBurst, performance.now(), joinBurst - 1);
  const joins: Promise<Member>[] = [];
  for (let sender = 0; sender < count; sender++) {
    await sleep(door.waitTime(performance.now()));
    door.take(performance.now());
    joins.push(Member.join(host, room, sender, check, sender / count));
    if ((sender + 1) % 20 === 0) progress(`${sender + 1} load clients joining`);
  }
  return Promise.all(joins);
}

async function measure(options: WorstLoadOptions, honest: HonestClient, members: Member[], stalled: Member[], check: DeliveryCheck): Promise<WorstLoad> {
  const { workerd, proxy, heap, progress } = options;
  const windows = LOAD_SECONDS / WINDOW_SECONDS + 1;
  const memory = {
    workerd: { before: rssBytes(workerd), windows: new Array<number>(windows).fill(0), after: 0 },
    proxy: { before: rssBytes(proxy), windows: new Array<number>(windows).fill(0), after: 0 },
  };
  const sample = () => {
    const window = Math.min(windows - 1, Math.floor((performance.now() - started) / 1000 / WINDOW_SECONDS));
    for (const [process, pid] of [
      [memory.workerd, workerd],
      [memory.proxy, proxy],
    ] as const) {
      process.after = rssBytes(pid);
      process.windows[window] = Math.max(process.windows[window]!, process.after);
    }
  };
  const cpuBefore = { workerd: cpuMicros(workerd), proxy: cpuMicros(proxy), generator: process.cpuUsage() };
  // Stalled clients read their refusals only after the load: the rate counts those of the others.
  const readers = members.filter((member) => !stalled.includes(member));
  const refusalsBefore = countRefusals(readers);
  const seqBefore = honest.lastSeq;
  for (const member of stalled) member.stall();

  progress(`${LOAD_SECONDS} s of load, ${stalled.length} of ${members.length} load clients not reading`);
  const started = performance.now();
  const sampler = setInterval(sample, SAMPLE_MS);
  const heapSampler = setInterval(() => heap?.sample(), SAMPLE_MS);
  const loadEnd = started + LOAD_SECONDS * 1000;
  let honestDue = started;
  let creating = true;
  const pump = setInterval(() => {
    const now = performance.now();
    for (const member of members) member.pump(now, creating);
    for (; creating && honestDue <= now; honestDue += 1000 / HONEST_RATE) honest.post();
  }, PUMP_MS);
  try {
    await sleep(loadEnd - performance.now());
    creating = false;
    const stopped = performance.now();
    clearInterval(heapSampler);
    const generator = process.cpuUsage(cpuBefore.generator);
    const cpu = { workerd: cpuMicros(workerd) - cpuBefore.workerd, proxy: cpuMicros(proxy) - cpuBefore.proxy, generator: generator.user + generator.system };
    const refusals = countRefusals(readers, refusalsBefore);
    const eventsPerSecond = (honest.lastSeq - seqBefore) / ((stopped - started) / 1000);
    // The events ordered by now: at least those up to the highest sequence number any reader has seen.
    const orderedBy = Math.max(honest.lastSeq, ...readers.map((member) => member.lastSeq));
    for (const member of stalled) member.wake();

    progress("load stopped; waiting for every post");
    let drainSeconds: number | undefined;
    let endSeconds: number | undefined;
    while (performance.now() < stopped + END_SECONDS * 1000) {
      const seconds = (performance.now() - stopped) / 1000;
      if (drainSeconds === undefined && honest.lastSeq >= orderedBy) drainSeconds = seconds;
      if (drainSeconds !== undefined && check.missing === 0 && honest.pending === 0) {
        endSeconds = seconds;
        break;
      }
      await sleep(10);
    }
    await sleep(2000); // memory after the load, too
    sample();
    const usedAfterCollection = await heap?.usedAfterCollection().catch((error: Error) => {
      progress(`the rooms' isolate heap after a full collection is not read: ${error.message}`);
      return undefined;
    });
    if (heap?.failure !== undefined) progress(`the rooms' isolate heap during the load is not reported: ${heap.failure}`);
    sample(); // the resident memory at the end, after that collection

    const { values, censored, shortestCensored } = honest.roundTrips(performance.now());
    const closes = new Map<number, number[]>();
    for (const member of members) for (const { code, at } of member.closes) closes.set(code, [...(closes.get(code) ?? []), (at - started) / 1000]);
    return {
      loadClients: members.length,
      stalled: stalled.length,
      memory,
      heap: { peak: heap?.failure === undefined ? heap?.peak : undefined, usedAfterCollection },
      cpuMicros: cpu,
      honest: {
        p50: percentile(values, 50),
        p99: percentile(values, 99),
        published: honest.published,
        censored,
        shortestCensored,
        refusals: honest.refusals,
        divergences: honest.divergences,
      },
      eventsPerSecond,
      refusalsPerSecond: new Map([...refusals].map(([code, count]) => [code, count / LOAD_SECONDS])),
      posts: postsNotOrdered(members, honest, check),
      drainSeconds,
      endSeconds,
      closes,
      stalledClosed: stalled.filter((member) => member.closes.length > 0).length,
    };
  } finally {
    clearInterval(pump);
    clearInterval(sampler);
    clearInterval(heapSampler);
  }
}

/** The refusals the members received, by code, less those counted in `before`; `busy` at the door is not a post's. */
function countRefusals(members: Member[], before = new Map<string, number>()): Map<string, number> {
  const counts = new Map<string, number>();
  for (const member of members) for (const [code, count] of member.refusals) if (code !== "busy") counts.set(code, (counts.get(code) ?? 0) + count);
  for (const [code, count] of before) counts.set(code, (counts.get(code) ?? 0) - count);
  return counts;
}

/**
 * Every post made must be in the order exactly once. A sender's posts reach the honest client in the order they were
 * made, so its missing ones are its last: those it still holds are queued (they would go out), the rest are lost.
 */
function postsNotOrdered(members: Member[], honest: HonestClient, check: DeliveryCheck): WorstLoad["posts"] {
  let lost = 0;
  let queued = honest.pending;
  let total = honest.published;
  members.forEach((member, sender) => {
    const missing = check.inFlight(0, sender);
    queued += Math.min(missing, member.pending);
    lost += missing - Math.min(missing, member.pending);
    total += check.sent(sender);
  });
  lost += honest.published - honest.pending - honest.ordered;
  return { lost, queued, duplicated: check.duplicates + honest.duplicates, total };
}

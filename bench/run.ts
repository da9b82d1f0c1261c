/**
 * `npm run bench`: measures the reflector side by side with a minimal baseline room (bench/baseline-worker.ts),
 * both under a real `wrangler dev` on loopback, and prints a markdown table with the budgets of issue 5, and what an
 * idle room costs. Each scenario uses a fresh room; server CPU time comes from the rooms' workerd process's
 * /proc/<pid>/stat.
 */
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { performance } from "node:perf_hooks";
import { gzipSync } from "node:zlib";
import WebSocket from "ws";
import { CHAT_SCOPE, ChatModel } from "../component/chat-model.js";
import { newRoomSecret, RoomKey } from "../component/room-key.js";
import { Session } from "../component/session.js";
import { parseServerFrames, PONG, type Welcome } from "../common/protocol.js";
import { DEFAULT_SETTINGS } from "../party/settings.js";
import { startReflector, type ReflectorServer } from "../test/support/reflector-server.js";
import { IsolateHeap } from "./isolate-heap.js";
import { connectClient, DeliveryCheck, percentile, type LoadClient, type ServerKind } from "./load.js";
import { cpuMicros, findProxy, findWorkerd, pauseWatchers, pinCores } from "./server-process.js";
import { END_SECONDS, HONEST_RATE, LOAD_SECONDS, WINDOW_SECONDS, worstLoad, type WorstLoad } from "./worst-load.js";

const QUICK = process.argv.includes("--quick");
/** `--only=round-trip,late-join` runs some scenarios (names as in the table's first column, lower case). */
const ONLY = process.argv
  .find((arg) => arg.startsWith("--only="))
  ?.slice("--only=".length)
  .split(",");
const selected = (name: string) => ONLY === undefined || ONLY.includes(name);
/** The scenarios that load both servers, after a common warm-up; `idle` needs neither. */
const LOAD_SCENARIOS = ["round-trip", "fan-out", "saturation", "late-join"];
/**
 * `--room-rate=200,400,600` runs worst load once per ROOM_RATE given, each on a reflector of its own, instead of once
 * with the default: what the study of that default needs (docs/performance.md, issue 16).
 */
const ROOM_RATES = process.argv
  .find((arg) => arg.startsWith("--room-rate="))
  ?.slice("--room-rate=".length)
  .split(",")
  .map(Number);
const SATURATION_RUNS = 3;
/** Fan-out runs each scenario's 10 s this many times per server, in turns of TURN_SECONDS, and pools the latencies. */
const FAN_OUT_PASSES = 2;
/**
 * Short enough that the idle server is never quiet for a whole tick interval (1 s): the reflector would then tick
 * its clients during the other server's turn.
 */
const TURN_SECONDS = 0.5;

interface Server {
  kind: ServerKind;
  dev: ReflectorServer;
  /** The workerd process that runs the server's rooms. */
  workerd: number;
  /** Lets its file watcher run again, which it must before it can stop. */
  resumeWatcher: () => void;
}

/** Each server's Worker: the project's reflector, or the baseline room, each without assets (see the configs). */
const CONFIGS: Record<ServerKind, string> = { reflector: "bench/wrangler.jsonc", baseline: "bench/baseline.wrangler.jsonc" };
/** Newcomers a room takes at once and then per second: raised, since the bench fills a room of 50 to 200 in seconds. */
const JOIN_SETTINGS = { JOIN_RATE: "1000", JOIN_BURST: "1000" };
/**
 * The load scenarios' reflector settings. Limits are raised so the load is never refused: one sender at saturation
 * is far above the 20 posts/s a person gets and the 200 a room gets, and adds more than the 1 MiB of log a room holds
 * between two snapshot rounds; fan-out puts 200 clients in a room that holds 100 by default. Everything else is
 * default.
 */
const LOAD_SETTINGS = {
  RATE_LIMIT: "1000000",
  RATE_BURST: "1000000",
  ROOM_RATE: "1000000",
  MAX_LOG: String(64 * 2 ** 20),
  MAX_CLIENTS: "1000",
  ...JOIN_SETTINGS,
};
/**
 * The idle scenario's reflector settings: the defaults but for joining, and a log line for every entry into a room's
 * code, which is what it counts. Only that server logs them: a line per frame would cost the load scenarios CPU.
 */
const IDLE_SETTINGS = { LOG_ENTRIES: "1", ...JOIN_SETTINGS };

let roomCount = 0;
const freshRoom = (name: string) => `bench-${name}-${Date.now().toString(36)}-${++roomCount}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How the servers' cores were assigned, for the report's heading. */
let pinning = "";

/**
 * Starts a server under `wrangler dev`, pauses its file watcher and pins it to the servers' core, and finds the
 * workerd process that runs its rooms.
 */
async function startServer(kind: ServerKind, vars?: Record<string, string>): Promise<Server> {
  const dev = await startReflector({ config: CONFIGS[kind], vars });
  const server: Server = { kind, dev, workerd: 0, resumeWatcher: pauseWatchers([dev.processGroup]) };
  started.push(server);
  pinning = pinCores([dev.processGroup]);
  await reloadsDone(dev);
  server.workerd = findWorkerd(dev.processGroup, dev.persistDir);
  progress(`${kind} on ${dev.host}, its rooms in workerd ${server.workerd}; ${pinning}`);
  return server;
}

/** Stops one server before the others: the scenarios under the production limits each have one of their own. */
async function stopServer(server: Server): Promise<void> {
  started.splice(started.indexOf(server), 1);
  server.resumeWatcher();
  await server.dev.stop();
}

/**
 * Waits for a reload of the Worker that began before its watcher was paused (a source changed) to finish: wrangler
 * reloads by starting a new workerd for the rooms, so the one to read is the one after it.
 */
async function reloadsDone(dev: ReflectorServer): Promise<void> {
  const count = (line: string) => dev.output().split(line).length - 1;
  const deadline = performance.now() + 10_000;
  await sleep(500); // a rebuild esbuild had finished when it was paused shows up within this
  while (count("Reloading local server") > count("Local server updated and ready")) {
    if (performance.now() > deadline) throw new Error(`the server on ${dev.host} did not finish reloading within 10 s`);
    await sleep(100);
  }
}

async function connectAll(server: Server, room: string, count: number, check: DeliveryCheck): Promise<LoadClient[]> {
  const clients: LoadClient[] = [];
  // In small batches: a burst of hundreds of handshakes at once is not what is measured here.
  for (let start = 0; start < count; start += 20) {
    const batch = Array.from({ length: Math.min(20, count - start) }, (_, offset) =>
      connectClient(server.kind, server.dev.host, room, check.receiver(start + offset)),
    );
    clients.push(...(await Promise.all(batch)));
  }
  return clients;
}

async function closeAll(clients: LoadClient[]): Promise<string[]> {
  await Promise.all(clients.map((client) => client.close()));
  return clients.flatMap((client) => client.refusals);
}

interface Outcome {
  check: DeliveryCheck;
  missing: number;
  refusals: string[];
  /** Server CPU time over all the room's load. */
  cpuMicros: number;
}

const KINDS = ["reflector", "baseline"] as const;

/** A fresh room on one server, with its clients connected, and the server CPU its load has cost so far. */
interface LoadedRoom {
  check: DeliveryCheck;
  clients: LoadClient[];
  cpuMicros: number;
}

/** A fresh room with `clients` clients on each server, `senders` of them posting. */
async function openRooms(servers: Record<ServerKind, Server>, name: string, clients: number, senders: number): Promise<Record<ServerKind, LoadedRoom>> {
  const rooms = {} as Record<ServerKind, LoadedRoom>;
  for (const kind of KINDS) {
    const check = new DeliveryCheck(senders, clients);
    rooms[kind] = { check, clients: await connectAll(servers[kind], freshRoom(name), clients, check), cpuMicros: 0 };
    progress(`${kind}: ${clients} connected`);
  }
  await sleep(200);
  return rooms;
}

/** Runs `load` in one server's room and waits for every delivery; adds the server's CPU to the room's. */
async function loadRoom(server: Server, room: LoadedRoom, load: () => Promise<void>): Promise<{ seconds: number; cpuMicros: number }> {
  const cpuBefore = cpuMicros(server.workerd);
  const started = performance.now();
  await load();
  await room.check.drain();
  const spent = { seconds: (performance.now() - started) / 1000, cpuMicros: cpuMicros(server.workerd) - cpuBefore };
  room.cpuMicros += spent.cpuMicros;
  return spent;
}

async function closeRooms(rooms: Record<ServerKind, LoadedRoom>): Promise<Record<ServerKind, Outcome>> {
  const outcomes = {} as Record<ServerKind, Outcome>;
  for (const kind of KINDS) {
    const { check, clients, cpuMicros: cpu } = rooms[kind];
    outcomes[kind] = { check, missing: check.missing, refusals: await closeAll(clients), cpuMicros: cpu };
  }
  return outcomes;
}

/** One client in a fresh room on each server posts `count` times, each after the previous one came back. */
async function roundTrip(servers: Record<ServerKind, Server>, count: number): Promise<Record<ServerKind, Outcome>> {
  const rooms = await openRooms(servers, "round-trip", 1, 1);
  for (const kind of KINDS) {
    const { check, clients } = rooms[kind];
    await loadRoom(servers[kind], rooms[kind], async () => {
      for (let n = 0; n < count; n++) {
        clients[0]!.publish(check.send(0));
        while (check.deliveries <= n) await new Promise((resolve) => setImmediate(resolve));
      }
    });
  }
  return closeRooms(rooms);
}

/**
 * Fan-out on both servers at once, taking turns: each has `clients` clients in a fresh room, every one posting
 * `rate` times a second at evenly spread moments and receiving everything. The servers alternate in turns of
 * TURN_SECONDS until each has had `passes` × `seconds` of load, and a turn starts only when the other server's posts
 * have all arrived. Taking turns exposes both to the same moments of a shared, noisy machine: in separate runs of
 * 10 s, the same server's p99 moved by 2 to 4 times from one run to the next.
 */
async function fanOut(
  servers: Record<ServerKind, Server>,
  clients: number,
  rate: number,
  seconds: number,
  passes: number,
): Promise<Record<ServerKind, Outcome>> {
  const rooms = await openRooms(servers, `fan-out-${clients}`, clients, clients);
  const interval = 1000 / rate;
  const turn = TURN_SECONDS * 1000;
  // Each server's schedule runs on its own clock, which advances only during its turns: post n of a sender is due
  // at interval × (n + sender / clients) of load, spread so the room's load is even, as with people typing.
  for (let loaded = 0; loaded < passes * seconds * 1000; loaded += turn) {
    for (const kind of KINDS) {
      const room = rooms[kind];
      const start = performance.now() + 5;
      await loadRoom(servers[kind], room, async () => {
        await Promise.all(
          room.clients.map(async (socket, sender) => {
            const first = Math.max(0, Math.ceil((loaded - (interval * sender) / clients) / interval));
            for (let due = interval * (first + sender / clients); due < loaded + turn; due += interval) {
              await sleep(Math.max(0, start + due - loaded - performance.now()));
              socket.publish(room.check.send(sender));
            }
          }),
        );
      });
    }
  }
  const outcomes = await closeRooms(rooms);
  progress(`fan-out, ${clients} clients: closed`);
  return outcomes;
}

/**
 * One sender keeps `window` posts in flight; `receivers` more clients receive everything. Each server runs `runs`
 * times for `seconds`, alternating, in one fresh room per server. Returns each run's deliveries per second and
 * server CPU per delivery.
 */
async function saturation(servers: Record<ServerKind, Server>, receivers: number, window: number, seconds: number, runs: number) {
  const rooms = await openRooms(servers, `saturation-${receivers}`, receivers + 1, 1);
  const samples: Record<ServerKind, { rate: number; cpuPerDelivery: number }[]> = { reflector: [], baseline: [] };
  for (let run = 0; run < runs; run++) {
    for (const kind of KINDS) {
      const { check, clients } = rooms[kind];
      const before = check.deliveries;
      const spent = await loadRoom(servers[kind], rooms[kind], async () => {
        const end = performance.now() + seconds * 1000;
        while (performance.now() < end) {
          // The sender is receiver 0: its own deliveries tell how many posts are still in flight.
          while (check.inFlight(0, 0) < window) clients[0]!.publish(check.send(0));
          await new Promise((resolve) => setImmediate(resolve));
        }
      });
      const deliveries = check.deliveries - before;
      samples[kind].push({ rate: deliveries / spent.seconds, cpuPerDelivery: spent.cpuMicros / deliveries });
    }
  }
  const outcomes = await closeRooms(rooms);
  progress(`saturation, ${receivers} receivers: closed`);
  return { outcomes, samples };
}

/** A WebSocket for the late joiner that counts the bytes it receives and reads the welcome. */
function countingWebSocket() {
  const stats: { bytes: number; openedAt: number; welcome: Welcome | undefined } = { bytes: 0, openedAt: NaN, welcome: undefined };
  class CountingWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.once("open", () => (stats.openedAt = performance.now()));
      this.on("message", (data: Buffer) => {
        stats.bytes += data.length;
        if (stats.welcome === undefined) stats.welcome = parseServerFrames(String(data)).find((frame) => frame.type === "welcome");
      });
    }
  }
  return { stats, WebSocket: CountingWebSocket };
}

/** A WebSocket for the replica that fills a late-join room: it notes the room's last event and snapshot points. */
function watchingWebSocket() {
  const room = { lastSeq: 0, dueSeq: 0, storedSeq: 0 };
  class WatchingWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.on("message", (data: Buffer) => {
        for (const frame of parseServerFrames(String(data))) {
          if (frame.type === "message" || frame.type === "user-enter" || frame.type === "user-exit") room.lastSeq = frame.seq;
          else if (frame.type === "snapshot-due") room.dueSeq = frame.seq;
          else if (frame.type === "snapshot-stored") room.storedSeq = frame.seq;
        }
      });
    }
  }
  return { room, WebSocket: WatchingWebSocket };
}

interface LateJoin {
  events: number;
  fillSeconds: number;
  /** Median over the joins. */
  milliseconds: number;
  bytes: number;
  /** Events the welcome sent after its snapshot. */
  replayed: number;
  snapshotSeq: number;
}

/** Fills a fresh room with `events` posts from one replica, then times new replicas joining it. */
async function lateJoin(server: Server, events: number, joins: number): Promise<LateJoin> {
  const room = freshRoom(`late-join-${events}`);
  const key = newRoomSecret();
  const join = (WebSocketClass: unknown = WebSocket) => Session.join({ host: server.dev.host, room, key, model: ChatModel, WebSocket: WebSocketClass });
  const watch = watchingWebSocket();
  const keeper = join(watch.WebSocket);
  await keeper.whenReady();
  const fillStarted = performance.now();
  const drained = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        if (keeper.pending.length > 0) return false;
        keeper.removeEventListener("pending", done);
        resolve();
        return true;
      };
      if (!done()) keeper.addEventListener("pending", done);
    });
  // In batches, so the keeper's outbox stays small.
  for (let posted = 0; posted < events; ) {
    const batch = Math.min(500, events - posted);
    for (let index = 0; index < batch; index++) keeper.publish(CHAT_SCOPE, "post", { text: `post ${++posted} of ${events}` });
    await drained();
  }
  const fillSeconds = (performance.now() - fillStarted) / 1000;
  // A round starts right after the event that makes it due: SNAPSHOT_EVENTS (1,000) events after the last one,
  // and at least SNAPSHOT_GAP_MS (1 s) after it. So a room filled at full speed ends up to 1,000 events past its
  // last snapshot, and the joiners' cost would depend on where the fill happened to stop, not on the room's
  // history. As in a room that goes on, posts after a pause start the round that covers the fill; the late
  // joiners come after it. A tail of up to two events per joiner is left alone: the joiners add as many (an
  // enter and an exit each) to every room.
  const filled = watch.room.lastSeq;
  await sleep(1100);
  for (let more = 1; filled - watch.room.dueSeq > 2 * joins; more++) {
    if (more > DEFAULT_SETTINGS.snapshotEvents) throw new Error(`no snapshot round after ${more - 1} more posts`);
    keeper.publish(CHAT_SCOPE, "post", { text: `after a pause, ${more}` });
    await drained();
  }
  const deadline = performance.now() + 10_000;
  while (watch.room.storedSeq < watch.room.dueSeq) {
    if (performance.now() > deadline) throw new Error(`snapshot ${watch.room.dueSeq} was not stored within 10 s`);
    await sleep(10);
  }
  const samples: { milliseconds: number; bytes: number; welcome: Welcome }[] = [];
  for (let index = 0; index < joins; index++) {
    const { stats, WebSocket: CountingWebSocket } = countingWebSocket();
    const joiner = join(CountingWebSocket);
    await joiner.whenReady();
    const milliseconds = performance.now() - stats.openedAt;
    const model = joiner.model as ChatModel;
    if (model.history.length === 0) throw new Error("the late joiner's model has no history");
    samples.push({ milliseconds, bytes: stats.bytes, welcome: stats.welcome! });
    joiner.leave();
  }
  keeper.leave();
  samples.sort((a, b) => a.milliseconds - b.milliseconds);
  const median = samples[Math.floor(samples.length / 2)]!;
  const snapshotSeq = median.welcome.snapshot?.seq ?? 0;
  return { events, fillSeconds, milliseconds: median.milliseconds, bytes: median.bytes, replayed: median.welcome.last - snapshotSeq, snapshotSeq };
}

/**
 * A WebSocket class for one idle room's clients that counts the WebSocket messages they receive, heartbeat answers
 * apart. Those are exactly PONG, as the platform sends it; anything else counts, whatever frames it holds.
 */
function frameCountingWebSocket() {
  const frames = { heartbeatAnswers: 0, others: 0 };
  class FrameCountingWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.on("message", (data: Buffer) => {
        if (String(data) === PONG) frames.heartbeatAnswers++;
        else frames.others++;
      });
    }
  }
  return { frames, WebSocket: FrameCountingWebSocket };
}

/** What one idle room's clients received, and how often the room's code ran, during the window. */
interface IdleRoom {
  clients: number;
  frames: number;
  heartbeatAnswers: number;
  /** Lines the room logged with LOG_ENTRIES=1: one per start, connect, message, close, error and alarm. */
  entries: number;
}

interface Idle {
  rooms: IdleRoom[];
  /** Each server's CPU time over the window, all its idle rooms together (one workerd runs them all). */
  cpuMicros: Record<ServerKind, number>;
}

/**
 * Idle rooms: `clients` real sessions (they say hello, keep a replica and send heartbeats) in a fresh room of a
 * reflector that logs every entry into a room's code, and as many thin clients in a fresh baseline room, for each
 * number of clients; then `seconds` without a post, all rooms in the same window. A room should sleep through it:
 * its clients' heartbeats are answered by the platform without waking it.
 */
async function idle(reflector: Server, baseline: Server, sizes: number[], seconds: number): Promise<Idle> {
  const key = newRoomSecret();
  const open = [];
  for (const clients of sizes) {
    const room = freshRoom(`idle-${clients}`);
    const counter = frameCountingWebSocket();
    const sessions: Session[] = [];
    // In batches, as connectAll does.
    for (let start = 0; start < clients; start += 20) {
      const batch = Array.from({ length: Math.min(20, clients - start) }, () =>
        Session.join({ host: reflector.dev.host, room, key, model: ChatModel, WebSocket: counter.WebSocket }),
      );
      await Promise.all(batch.map((session) => session.whenReady()));
      sessions.push(...batch);
    }
    // The baseline's clients stay silent: the baseline room has no heartbeat answer, and would broadcast a heartbeat.
    const baselineClients = await connectAll(baseline, freshRoom(`idle-${clients}`), clients, new DeliveryCheck(0, clients));
    // The reflector knows a room by its address, which the log names: its name and its members' key's fingerprint.
    const { address } = await RoomKey.derive(room, key);
    open.push({ address, clients, counter, sessions, baselineClients });
    progress(`idle: ${clients} clients connected`);
  }
  // The joins leave the reflector's rooms one thing due: writing the log, at most WRITE_INTERVAL_MS (1 s) later.
  await sleep(3000);
  const entries = (address: string) => reflector.dev.output().split(`room ${address}: `).length - 1;
  // The counts must have seen the joins: counts that see nothing would pass any room as quiet.
  for (const { address, counter } of open) {
    if (entries(address) === 0 || counter.frames.others === 0)
      throw new Error(`the joins into ${address} showed ${entries(address)} logged entries and ${counter.frames.others} frames`);
  }
  const before = open.map(({ address, counter }) => ({ ...counter.frames, entries: entries(address) }));
  const cpuBefore = { reflector: cpuMicros(reflector.workerd), baseline: cpuMicros(baseline.workerd) };
  progress(`idle: ${seconds} s without posts`);
  await sleep(seconds * 1000);
  const cpuMicrosSpent = { reflector: cpuMicros(reflector.workerd) - cpuBefore.reflector, baseline: cpuMicros(baseline.workerd) - cpuBefore.baseline };
  const rooms = open.map(({ address, clients, counter }, index) => ({
    clients,
    frames: counter.frames.others - before[index]!.others,
    heartbeatAnswers: counter.frames.heartbeatAnswers - before[index]!.heartbeatAnswers,
    entries: entries(address) - before[index]!.entries,
  }));
  for (const { sessions, baselineClients } of open) {
    for (const session of sessions) session.leave();
    await closeAll(baselineClients);
  }
  return { rooms, cpuMicros: cpuMicrosSpent };
}

// ---- the report ----

/** The commit measured, so that tables kept in docs/performance.md say what they measured. */
function revision(): string {
  try {
    const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const changed =
      execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() !== "";
    return `commit ${commit}${changed ? " with uncommitted changes" : ""}`;
  } catch {
    return "no git commit";
  }
}

/** The version of `wrangler dev` that ran the servers. */
const WRANGLER_VERSION = (JSON.parse(await readFile("node_modules/wrangler/package.json", "utf8")) as { version: string }).version;

const format = (value: number, digits = 1) =>
  Number.isFinite(value) ? value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "–";
const integer = (value: number) => Math.round(value).toLocaleString("en-US");
const ratio = (ours: number, base: number) => (base > 0 ? `${format(ours / base, 2)}×` : "–");

interface Row {
  scenario: string;
  metric: string;
  reflector: string;
  baseline: string;
  ratio: string;
  budget: string;
  ok?: boolean;
}
const rows: Row[] = [];
const verdict = (ok: boolean | undefined) => (ok === undefined ? "" : ok ? " ✅" : " ❌");

function row(scenario: string, metric: string, ours: number, base: number | undefined, show: (value: number) => string, budget = "", ok?: boolean): void {
  rows.push({
    scenario,
    metric,
    reflector: show(ours),
    baseline: base === undefined ? "–" : show(base),
    ratio: base === undefined ? "–" : ratio(ours, base),
    budget: budget + verdict(ok),
    ok,
  });
}

/** Loss, reordering, duplicates and refusals must all be zero, summed over every run of a scenario. */
function integrity(scenario: string, ours: Outcome[], base: Outcome[]): void {
  const sum = (outcomes: Outcome[], count: (outcome: Outcome) => number) => outcomes.reduce((total, outcome) => total + count(outcome), 0);
  const counts = (outcomes: Outcome[]) =>
    [
      sum(outcomes, (o) => o.missing),
      sum(outcomes, (o) => o.check.reordered),
      sum(outcomes, (o) => o.check.duplicates),
      sum(outcomes, (o) => o.refusals.length),
    ] as const;
  const describe = (outcomes: Outcome[]) => {
    const [missing, reordered, duplicates, refused] = counts(outcomes);
    return `${missing} / ${reordered} / ${duplicates}${refused > 0 ? ` (${refused} refused)` : ""}`;
  };
  const ok = counts(ours).every((count) => count === 0);
  rows.push({
    scenario,
    metric: "lost / reordered / duplicated",
    reflector: describe(ours),
    baseline: describe(base),
    ratio: "",
    budget: `all 0${verdict(ok)}`,
    ok,
  });
}

const perDelivery = (outcome: Outcome) => outcome.cpuMicros / outcome.check.deliveries;

const began = performance.now();
/** Progress on stderr, so that stdout is the table alone. */
const progress = (text: string) => console.error(`bench: ${format((performance.now() - began) / 1000, 0)} s: ${text}`);

/** Every server started and not yet stopped, so that even a crash of the bench stops them (by their process groups). */
const started: Server[] = [];
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void stopAll().then(() => process.exit(130)));
process.once("uncaughtException", (error) => {
  console.error(error);
  void stopAll().then(() => process.exit(1));
});
async function stopAll(): Promise<void> {
  await Promise.all([...started].map(stopServer));
}

/** Round trip, fan-out, saturation and late join, those selected, after a warm-up of both servers. */
async function loadScenarios(servers: Record<ServerKind, Server>): Promise<void> {
  // Warm-up: the first few thousand messages run through workerd's JIT; not measured.
  progress("warming up");
  await roundTrip(servers, 500);
  await saturation(servers, 10, 100, 1, 1);

  if (selected("round-trip")) {
    const posts = QUICK ? 300 : 2000;
    progress(`round trip, ${posts} posts`);
    const rt = await roundTrip(servers, posts);
    row(
      `Round trip, 1 client, ${posts} sequential posts`,
      "p50 ms",
      percentile(rt.reflector.check.latencies, 50),
      percentile(rt.baseline.check.latencies, 50),
      (v) => format(v, 2),
    );
    row("", "p99 ms", percentile(rt.reflector.check.latencies, 99), percentile(rt.baseline.check.latencies, 99), (v) => format(v, 2));
    integrity("", [rt.reflector], [rt.baseline]);
  }

  const fanSeconds = QUICK ? 2 : 10;
  for (const [clients, rate] of selected("fan-out")
    ? ([
        [10, 20],
        [50, 5],
        [200, 1],
      ] as const)
    : []) {
    progress(`fan-out, ${clients} clients × ${rate}/s`);
    const outcomes = await fanOut(servers, clients, rate, fanSeconds, FAN_OUT_PASSES);
    const latency = (kind: ServerKind, p: number) => percentile(outcomes[kind].check.latencies, p);
    row(
      `Fan-out, ${clients} clients × ${rate} posts/s, ${FAN_OUT_PASSES} × ${fanSeconds} s in turns of ${TURN_SECONDS} s`,
      "delivery p50 ms",
      latency("reflector", 50),
      latency("baseline", 50),
      (v) => format(v, 2),
    );
    row("", "delivery p90 ms", latency("reflector", 90), latency("baseline", 90), (v) => format(v, 2));
    const [p99, baseP99] = [latency("reflector", 99), latency("baseline", 99)];
    row("", "delivery p99 ms", p99, baseP99, (v) => format(v, 2), "≤ 1.3× baseline", p99 <= 1.3 * baseP99);
    row("", "server CPU µs / delivery", perDelivery(outcomes.reflector), perDelivery(outcomes.baseline), (v) => format(v, 2));
    integrity("", [outcomes.reflector], [outcomes.baseline]);
  }

  const saturationSeconds = QUICK ? 2 : 5;
  for (const receivers of selected("saturation") ? [10, 50] : []) {
    progress(`saturation, ${receivers} receivers`);
    // Throughput and CPU are the budgets here, so each server runs three times, alternating, and the median counts.
    const { outcomes, samples } = await saturation(servers, receivers, 100, saturationSeconds, SATURATION_RUNS);
    const median = (kind: ServerKind, of: "rate" | "cpuPerDelivery") =>
      percentile(
        samples[kind].map((sample) => sample[of]),
        50,
      );
    const [ours, base] = [median("reflector", "rate"), median("baseline", "rate")];
    const [cpu, baseCpu] = [median("reflector", "cpuPerDelivery"), median("baseline", "cpuPerDelivery")];
    // With 50 receivers the reflector's batching (a frame per 5 ms window, against the baseline's frame per post) must
    // pay: twice the deliveries for half the CPU each. With 10 it need only keep up.
    const [throughput, cost] = receivers === 50 ? [2, 0.5] : [0.85, 1.15];
    row(
      `Saturation, 1 sender (100 in flight), ${receivers} receivers, ${SATURATION_RUNS} runs of ${saturationSeconds} s, median`,
      "deliveries / s",
      ours,
      base,
      integer,
      `≥ ${throughput}× baseline`,
      ours >= throughput * base,
    );
    row("", "server CPU µs / delivery", cpu, baseCpu, (v) => format(v, 2), `≤ ${cost}× baseline`, cpu <= cost * baseCpu);
    integrity("", [outcomes.reflector], [outcomes.baseline]);
  }

  const sizes = !selected("late-join") ? [] : QUICK ? [1000, 10_000] : [1000, 10_000, 100_000];
  const joins: LateJoin[] = [];
  for (const events of sizes) {
    progress(`late join, ${events} events`);
    joins.push(await lateJoin(servers.reflector, events, 5));
  }
  for (const join of joins) {
    const first = joins[0]!;
    const last = join === joins.at(-1) && join !== first;
    const scenario = `Late join, ${integer(join.events)} events (filled in ${format(join.fillSeconds)} s; snapshot at ${integer(join.snapshotSeq)}, then ${join.replayed} events)`;
    row(
      scenario,
      "open → model ready, ms (median of 5)",
      join.milliseconds,
      undefined,
      (v) => format(v, 1),
      last ? `≤ 1.5× the ${integer(first.events)}-event room` : "",
      last ? join.milliseconds <= 1.5 * first.milliseconds : undefined,
    );
    row("", "bytes received", join.bytes, undefined, integer, last ? "not growing with history" : "", last ? join.bytes <= 1.1 * first.bytes : undefined);
  }
}

/** The idle scenario: rooms of 3 and 100 clients on a reflector of their own (see IDLE_SETTINGS), then no posts. */
async function idleScenario(baseline: Server): Promise<void> {
  const sizes = [3, 100];
  const seconds = QUICK ? 25 : 60;
  const reflector = await startServer("reflector", IDLE_SETTINGS);
  const { rooms, cpuMicros: cpu } = await idle(reflector, baseline, sizes, seconds);
  for (const room of rooms) {
    row(
      `Idle, ${room.clients} clients (sessions with heartbeats), ${seconds} s without posts`,
      "frames received other than heartbeat answers",
      room.frames,
      undefined,
      integer,
      "0: no frames but heartbeat answers",
      room.frames === 0,
    );
    row("", "heartbeat answers received", room.heartbeatAnswers, undefined, integer);
    row("", "entries into the room's code", room.entries, undefined, integer, "0: zero wake-ups", room.entries === 0);
  }
  // No ratio: the baseline's clients send no heartbeats, and a minute idle is a few of the kernel's 10 ms ticks.
  const perMinute = (micros: number) => format(micros / 1000 / (seconds / 60), 0);
  rows.push({
    scenario: `Idle, both rooms at once (${sizes.join(" + ")} clients; the baseline's send nothing)`,
    metric: "server CPU ms per idle minute",
    reflector: perMinute(cpu.reflector),
    baseline: perMinute(cpu.baseline),
    ratio: "",
    budget: "",
  });
}

/**
 * Worst load and stalled readers, those selected: each on a reflector of its own with the production defaults (or,
 * with --room-rate, worst load once per ROOM_RATE given), stopped after it, so that the rooms' workerd's memory is
 * this scenario's alone.
 */
async function productionScenarios(): Promise<void> {
  const loadClients = DEFAULT_SETTINGS.maxClients - 1;
  const runs = [
    ...(selected("worst-load") ? (ROOM_RATES ?? [DEFAULT_SETTINGS.roomRate]).map((roomRate) => ({ roomRate, stalled: 0 })) : []),
    ...(selected("stalled-readers") ? [{ roomRate: DEFAULT_SETTINGS.roomRate, stalled: Math.ceil(loadClients / 2) }] : []),
  ];
  for (const { roomRate, stalled } of runs) {
    const server = await startServer("reflector", roomRate === DEFAULT_SETTINGS.roomRate ? {} : { ROOM_RATE: String(roomRate) });
    const heap = await connectHeap(server);
    try {
      const name = stalled === 0 ? "worst-load" : "stalled-readers";
      progress(`${name}, ROOM_RATE ${roomRate}: filling a room of ${loadClients + 1} at the join rate`);
      const proxy = findProxy(server.dev.processGroup, server.dev.persistDir);
      const outcome = await worstLoad({ host: server.dev.host, workerd: server.workerd, proxy, heap, room: freshRoom(name), roomRate, stalled, progress });
      worstLoadRows(outcome, roomRate);
    } finally {
      heap?.close();
      await stopServer(server);
    }
  }
}

/** The heap of the isolate that runs a server's rooms, or none, and a progress line saying why. */
async function connectHeap(server: Server): Promise<IsolateHeap | undefined> {
  try {
    if (server.dev.inspectorPort === undefined) throw new Error(`${server.dev.platform} dev has no inspector`);
    return await IsolateHeap.connect(server.dev.inspectorPort, server.dev.host);
  } catch (error) {
    const { message, cause } = error as Error;
    progress(`the rooms' isolate heap is not read: ${message}${cause instanceof Error ? ` (${cause.message})` : ""}`);
    return undefined;
  }
}

/** A row whose value is text, for the scenarios without a baseline. */
function textRow(scenario: string, metric: string, value: string, budget = "", ok?: boolean): void {
  rows.push({ scenario, metric, reflector: value, baseline: "–", ratio: "–", budget: budget + verdict(ok), ok });
}

function worstLoadRows(outcome: WorstLoad, roomRate: number): void {
  const { loadClients, stalled, memory, cpuMicros: cpu, honest, posts, drainSeconds, endSeconds } = outcome;
  const what = stalled === 0 ? "Worst legal load" : `Stalled readers: worst legal load with ${stalled} load clients not reading`;
  const settings = roomRate === DEFAULT_SETTINGS.roomRate ? "production defaults" : `defaults but ROOM_RATE ${roomRate}`;
  const scenario = `${what} (${loadClients} clients at their rate limit + 1 Session at ${HONEST_RATE} posts/s, ${LOAD_SECONDS} s; ${settings})`;
  const mib = (bytes: number) => format(bytes / 2 ** 20, 1);
  const growth = Math.max(...memory.workerd.windows) - memory.workerd.before;
  row(scenario, "rooms' workerd memory growth, MiB (max − before)", growth, undefined, mib, "≤ 64", growth <= 64 * 2 ** 20);
  // Growth that levels off is the heap settling to the load; growth that goes on would be something kept.
  const course = ({ before, windows, after }: WorstLoad["memory"]["workerd"]) => [...windows, after].map((bytes) => mib(bytes - before)).join(" / ");
  const stretches = `${Array.from({ length: memory.workerd.windows.length - 1 }, (_, index) => `${(index + 1) * WINDOW_SECONDS} s`).join(" / ")} / after / at the end${outcome.heap.usedAfterCollection === undefined ? "" : " (after a full collection of the rooms' heap)"}`;
  textRow("", `rooms' workerd memory growth, MiB, most by ${stretches} (before: ${mib(memory.workerd.before)})`, course(memory.workerd));
  textRow("", "proxy workerd memory growth, MiB, the same", course(memory.proxy));
  // The rooms' JavaScript alone, which Cloudflare's 128 MB per isolate bounds; the workerd's memory above is more.
  const { peak, usedAfterCollection } = outcome.heap;
  textRow(
    "",
    "rooms' isolate JS heap, MiB: most used during the load / heap size at that time",
    peak === undefined ? "–" : `${mib(peak.used)} / ${mib(peak.total)}`,
  );
  textRow("", "rooms' isolate JS heap used after a full collection at the end, MiB", usedAfterCollection === undefined ? "–" : mib(usedAfterCollection));
  // Posts still waiting at the end count as lasting until then: their round trip is at least that.
  const atLeast = (value: number) => (honest.censored > 0 && value >= honest.shortestCensored ? "≥ " : "") + format(value, 0);
  textRow("", `honest round trip p50 ms (${honest.published} posts)`, atLeast(honest.p50));
  textRow(
    "",
    `honest round trip p99 ms${honest.censored > 0 ? ` (${honest.censored} not back by the end)` : ""}`,
    atLeast(honest.p99),
    "≤ 250",
    honest.p99 <= 250,
  );
  const notOrdered = posts.lost + posts.queued + posts.duplicated;
  textRow(
    "",
    `posts not in the order exactly once by the end: lost / still queued / duplicated (of ${integer(posts.total)})`,
    `${posts.lost} / ${posts.queued} / ${posts.duplicated}`,
    "all 0",
    notOrdered === 0,
  );
  const seconds = (value: number | undefined) => (value === undefined ? `> ${END_SECONDS}` : format(value, 2));
  textRow(
    "",
    "drain s: load end → honest client has every event ordered by then",
    seconds(drainSeconds),
    "≤ 2",
    drainSeconds !== undefined && drainSeconds <= 2,
  );
  textRow("", "s from load end until every post is in the order and at the honest client", seconds(endSeconds));
  row("", "events ordered / s during the load", outcome.eventsPerSecond, undefined, integer);
  const refusals = [...outcome.refusalsPerSecond].filter(([, perSecond]) => perSecond > 0);
  textRow("", "refusals / s read by the reading load clients", refusals.map(([code, perSecond]) => `${format(perSecond, 0)} ${code}`).join(", ") || "0");
  const honestRefusals = [...honest.refusals].map(([code, count]) => `${count} ${code}`).join(", ") || "0";
  textRow(
    "",
    "honest client: refusals; divergence reports (it votes its real hash, the load clients an agreed one)",
    `${honestRefusals}; ${honest.divergences}`,
  );
  const percent = (micros: number) => format((100 * micros) / (LOAD_SECONDS * 1e6), 0);
  textRow(
    "",
    "CPU during the load, % of a core: rooms' workerd / proxy / load generator",
    `${percent(cpu.workerd)} / ${percent(cpu.proxy)} / ${percent(cpu.generator)}`,
  );
  const span = (times: number[]) => [...new Set([Math.min(...times), Math.max(...times)].map((time) => format(time, 1)))].join("-");
  const closes = [...outcome.closes].map(([code, times]) => `${times.length} × ${code} (read at ${span(times)} s)`).join(", ") || "none";
  if (stalled === 0) textRow("", "connections the room closed (close codes)", closes);
  else textRow("", "connections the room closed (close codes); stalled clients it closed", `${closes}; ${outcome.stalledClosed} of ${stalled}`);
}

async function main(): Promise<void> {
  try {
    // The baseline serves both the load scenarios and the idle one.
    const baseline = LOAD_SCENARIOS.some(selected) || selected("idle") ? await startServer("baseline") : undefined;
    if (LOAD_SCENARIOS.some(selected)) await loadScenarios({ reflector: await startServer("reflector", LOAD_SETTINGS), baseline: baseline! });
    if (selected("idle")) await idleScenario(baseline!);
    await productionScenarios();
  } catch (error) {
    for (const { kind, dev } of started) console.error(`--- ${kind} server on ${dev.host}: output (end) ---\n${dev.output().slice(-3000)}`);
    throw error;
  }
  await stopAll();

  const bundle = await readFile("dist/multiuser-chat.js");
  const gzipped = gzipSync(bundle).length;
  row("Element bundle (dist/multiuser-chat.js)", "bytes minified", bundle.length, undefined, integer);
  row("", "bytes gzipped", gzipped, undefined, integer, "≤ 30,000", gzipped <= 30_000);

  const cpu = cpus()[0]?.model ?? "unknown CPU";
  console.log(
    `### ${new Date().toISOString().slice(0, 10)}, ${revision()}: ${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; wrangler ${WRANGLER_VERSION} dev; ${pinning}; file watchers paused${QUICK ? "; --quick" : ""}\n`,
  );
  console.log("| Scenario | Metric | Reflector | Baseline | Ratio | Budget |");
  console.log("| --- | --- | ---: | ---: | ---: | --- |");
  for (const r of rows) console.log(`| ${r.scenario} | ${r.metric} | ${r.reflector} | ${r.baseline} | ${r.ratio} | ${r.budget} |`);
  const missed = rows.filter((r) => r.ok === false).length;
  console.log(`\n${missed === 0 ? "Every budget met" : `${missed} budget(s) missed`}; ran in ${format((performance.now() - began) / 1000, 0)} s.`);
}

try {
  await main();
} finally {
  await stopAll();
}

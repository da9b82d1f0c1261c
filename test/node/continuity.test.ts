/**
 * Continuity against a real local server, under both platforms (`wrangler dev` and `partykit dev`): late joins from a snapshot after many events, connections that drop
 * and come back (within and after the grace period), posts resent over dying connections, replicas that diverge,
 * and rooms that outlive their clients (a server restart) or are deleted by the retention alarm.
 *
 * Every client is a headless Session (Node `ws`) or a bare socket speaking the wire protocol; nothing is mocked.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { ChatModel } from "../../component/chat-model.js";
import { RoomKey } from "../../component/room-key.js";
import { Replica, type ModelClass } from "../../component/runtime.js";
import { Session } from "../../component/session.js";
import { stateHash } from "../../component/state-hash.js";
import { sha256Hex } from "../../common/crypto.js";
import { parseServerFrames, type ClientFrame, type ReflectedEvent, type ServerFrame, type Welcome } from "../../common/protocol.js";
import { DriftingChatModel } from "../support/drifting-model.js";
import { TestNetwork } from "../support/network.js";
import { RawClient } from "../support/raw-client.js";
import { PLATFORMS, removePersistDir, startReflector, type ReflectorServer } from "../support/reflector-server.js";
import { assertConverged, chat, postTexts } from "../support/sessions.js";
import { sleep, waitFor } from "../support/wait-for.js";

const GRACE_MS = 2000;
const SNAPSHOT_EVENTS = 500;
/**
 * No time-driven snapshots: the tests compare whole states at the points they choose. Rounds
 * follow SNAPSHOT_EVENTS alone (no gap between them), so the tests can count them. Clients here post in bursts
 * of hundreds, which the default rate limit is there to stop; test/node/limits.test.ts covers it.
 */
const QUIET = { SNAPSHOT_INTERVAL_MS: "600000", SNAPSHOT_GAP_MS: "0", RATE_LIMIT: "100000", RATE_BURST: "100000", ROOM_RATE: "100000" };
const MAIN_VARS = { ...QUIET, GRACE_MS: String(GRACE_MS), SNAPSHOT_EVENTS: String(SNAPSHOT_EVENTS), VOTE_TIMEOUT_MS: "5000" };
const SMALL_SNAPSHOT_EVENTS = 10;
const RETENTION_MS = 1500;
const SMALL_VARS = { ...QUIET, GRACE_MS: "300", SNAPSHOT_EVENTS: String(SMALL_SNAPSHOT_EVENTS), VOTE_TIMEOUT_MS: "3000", RETENTION_MS: String(RETENTION_MS) };
const MODEL_OPTIONS = { maxHistory: 100 };

type EventFrame = Extract<ServerFrame, ReflectedEvent>;
/** The key every client of `room` derives when no secret is given: payloads and snapshots on the wire are sealed with it. */
const keyOf = (room: string) => RoomKey.derive(room, undefined);
/** A message as a replica applies it, its payload opened where the reflector put it. */
async function opened(key: RoomKey, event: EventFrame): Promise<EventFrame> {
  return event.type === "message" ? { ...event, payload: await key.openPost(event.payload, event.client, event.id) } : event;
}
const isEvent = (frame: ServerFrame): frame is EventFrame => frame.type === "message" || frame.type === "user-enter" || frame.type === "user-exit";

/** What went over one socket. */
interface SocketLog {
  socket: WebSocket;
  sent: ClientFrame[];
  received: ServerFrame[];
}

/**
 * A breakable network (TestNetwork) that also records every frame each socket sent and received, and lets a test
 * act on a frame: drop it as a dying connection would, or kill the socket right after it.
 */
class Wire {
  readonly network = new TestNetwork();
  readonly sockets: SocketLog[] = [];
  /** Called before a frame goes out; "drop" loses it, as on a connection that is already dead. */
  beforeSend: ((frame: ClientFrame, log: SocketLog) => "drop" | undefined) | undefined;
  /** Called for each frame as it arrives, before the session sees it. */
  onReceive: ((frame: ServerFrame, log: SocketLog) => void) | undefined;
  readonly WebSocket: typeof WebSocket;

  constructor() {
    const wire = this;
    this.WebSocket = class RecordingWebSocket extends this.network.WebSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        const log: SocketLog = { socket: this, sent: [], received: [] };
        wire.sockets.push(log);
        this.on("message", (data) => {
          for (const frame of parseServerFrames(String(data))) {
            log.received.push(frame);
            wire.onReceive?.(frame, log);
          }
        });
        const send = this.send.bind(this) as (data: unknown, ...rest: unknown[]) => void;
        this.send = ((data: unknown, ...rest: unknown[]) => {
          const frame = JSON.parse(String(data)) as ClientFrame;
          if (wire.beforeSend?.(frame, log) === "drop") return;
          log.sent.push(frame);
          send(data, ...rest);
        }) as typeof this.send;
      }
    } as typeof WebSocket;
  }

  /** Sockets that reached the reflector (got a welcome), in order. */
  get connections(): SocketLog[] {
    return this.sockets.filter((log) => log.received.some((frame) => frame.type === "welcome"));
  }

  get received(): ServerFrame[] {
    return this.sockets.flatMap((log) => log.received);
  }

  ofType<T extends ServerFrame["type"]>(type: T): Extract<ServerFrame, { type: T }>[] {
    return this.received.filter((frame): frame is Extract<ServerFrame, { type: T }> => frame.type === type);
  }

  welcomes(): Welcome[] {
    return this.ofType("welcome");
  }
}

interface Client {
  session: Session;
  wire: Wire;
}

const notices = (session: Session) => chat(session).history.filter((entry) => entry.kind === "notice");
const countOf = <T>(items: T[], item: T) => items.filter((each) => each === item).length;

async function joinClient(
  server: ReflectorServer,
  room: string,
  tracked: Session[],
  model: ModelClass = ChatModel,
  modelOptions: unknown = MODEL_OPTIONS,
): Promise<Client> {
  const wire = new Wire();
  const session = Session.join({ host: server.host, room, model, modelOptions, WebSocket: wire.WebSocket });
  tracked.push(session);
  await waitFor(() => session.replica !== undefined && session.status === "connected", `a client of room ${room} to be welcomed`);
  await session.whenReady();
  return { session, wire };
}

for (const platform of PLATFORMS)
  describe(`continuity and room lifetime against a real ${platform} dev`, () => {
    const MAIN_SERVER = { current: undefined as ReflectorServer | undefined };
    const SMALL_SERVER = { current: undefined as ReflectorServer | undefined };
    const sessions: Session[] = [];
    /** Every server started here, to stop at the end; a restarted one keeps its state folder until then. */
    const servers = new Set<ReflectorServer>();
    const main = () => MAIN_SERVER.current!;
    const small = () => SMALL_SERVER.current!;
    const start = async (options: Parameters<typeof startReflector>[0]) => {
      const server = await startReflector({ platform, ...options });
      servers.add(server);
      return server;
    };

    before(async () => {
      [MAIN_SERVER.current, SMALL_SERVER.current] = await Promise.all([start({ vars: MAIN_VARS }), start({ vars: SMALL_VARS })]);
    });

    after(async () => {
      for (const session of sessions) session.leave();
      for (const server of servers) await server.stop({ keep: true });
      for (const dir of new Set([...servers].map((server) => server.persistDir))) await removePersistDir(dir);
    });

    describe("continuity", () => {
      test("a client joining after more than 10,000 events gets a snapshot and fewer than SNAPSHOT_EVENTS events", async () => {
        const room = "ten-thousand";
        const clients: Client[] = [];
        for (let i = 0; i < 3; i++) clients.push(await joinClient(main(), room, sessions));
        const all = clients.map(({ session }) => session);
        await waitFor(() => all.every((session) => chat(session).users.length === 3), "three users everywhere");

        const started = Date.now();
        const perClient = 200;
        let batches = 0;
        while (all[0]!.replica!.seq <= 10_000) {
          const target = all[0]!.replica!.seq + perClient * all.length;
          all.forEach((session, index) => {
            for (let i = 0; i < perClient; i++) session.publish("chat", "post", { text: `batch ${batches} client ${index} post ${i}` });
          });
          batches++;
          await waitFor(() => all.every((session) => session.replica!.seq === target && session.pending.length === 0), `batch ${batches} everywhere`, 30_000);
        }
        const last = all[0]!.replica!.seq;

        // Snapshot rounds finish asynchronously: wait until one less than SNAPSHOT_EVENTS behind the last event is stored
        // (a round owed when the posts stopped starts without another event), and no other round is running. The two
        // conditions apart: "stored" may come in one frame and the next "due" a few milliseconds later, in the next batch.
        const lastOf = (wire: Wire, type: "snapshot-due" | "snapshot-stored") => Math.max(0, ...wire.ofType(type).map((frame) => frame.seq));
        await waitFor(
          () => clients.every(({ wire }) => last - lastOf(wire, "snapshot-stored") < SNAPSHOT_EVENTS),
          `a snapshot less than ${SNAPSHOT_EVENTS} events behind ${last}`,
        );
        await waitFor(
          () => clients.every(({ wire }) => lastOf(wire, "snapshot-stored") === lastOf(wire, "snapshot-due")),
          "the last snapshot round to be stored",
        );
        const stored = lastOf(clients[0]!.wire, "snapshot-stored");
        const rounds = clients[0]!.wire.ofType("snapshot-stored").length;
        console.log(`# ${last} events in ${batches} batches in ${Date.now() - started} ms; ${rounds} snapshots stored, the last at ${stored}`);
        assert.ok(rounds >= Math.floor(last / SNAPSHOT_EVENTS) - 1, `only ${rounds} snapshots for ${last} events`);
        assert.ok(last - stored < SNAPSHOT_EVENTS, `the last snapshot (${stored}) is ${last - stored} events behind ${last}`);
        assert.equal(clients.flatMap(({ wire }) => wire.ofType("divergence")).length, 0, "honest replicas never diverge");
        assert.equal(clients.flatMap(({ wire }) => wire.ofType("error")).length, 0, "the reflector refused no frame");
        // Every replica voted at the stored point, with the same hash.
        const votes = clients.map(({ wire }) => wire.sockets.flatMap((log) => log.sent).find((frame) => frame.type === "hash" && frame.seq === stored));
        assert.equal(votes.length, 3);
        const votedHash = (votes[0] as Extract<ClientFrame, { type: "hash" }>).hash;
        assert.ok(
          votes.every((vote) => vote?.type === "hash" && vote.hash === votedHash),
          "every replica voted the same hash at the stored point",
        );
        const hash = await assertConverged(all);

        // A raw newcomer sees the welcome as sent: the snapshot, then only the events after it.
        const raw = await RawClient.join(main().host, room);
        const { welcome: rawWelcome, parts, events } = await raw.welcomed();
        assert.deepEqual(rawWelcome.snapshot, { seq: stored, parts: parts.length, hash: votedHash });
        assert.equal(rawWelcome.from, stored);
        assert.equal(rawWelcome.last, last + 1, "the raw socket's own enter is the last event of its welcome");
        assert.deepEqual(
          events.map((event) => event.seq),
          Array.from({ length: rawWelcome.last - stored }, (_, index) => stored + 1 + index),
        );
        assert.ok(events.length < SNAPSHOT_EVENTS, `${events.length} events after the snapshot`);
        const key = await keyOf(room);
        const sealed = parts.map((part) => part.data).join("");
        const snapshotText = await key.openSnapshot(sealed, stored);
        assert.ok(!sealed.includes("batch"), "the snapshot travels encrypted");
        assert.equal(await sha256Hex(sealed), votedHash, "the stored snapshot is what every replica voted for");
        assert.equal(rawWelcome.snapshot!.hash, votedHash, "and the welcome says so");
        const rebuilt = Replica.restore(snapshotText);
        for (const event of events) rebuilt.apply(await opened(key, event));
        rebuilt.advanceTo(rawWelcome.time);
        await waitFor(() => all.every((session) => session.replica!.seq === rawWelcome.last), "the raw socket's enter everywhere");
        const afterRawEnter = await assertConverged(all);
        assert.notEqual(afterRawEnter, hash);
        assert.equal(await stateHash(rebuilt), afterRawEnter, "snapshot plus events rebuild the others' state");
        console.log(`# raw newcomer: snapshot at ${stored} in ${parts.length} part(s) of ${snapshotText.length} chars, then ${events.length} events`);
        raw.leave();
        await waitFor(() => all.every((session) => chat(session).users.length === 3), "the raw socket's exit");

        // A Session newcomer: restored from the snapshot, caught up, and in the same state as everyone.
        const newcomer = await joinClient(main(), room, sessions);
        const welcome = newcomer.wire.welcomes()[0]!;
        assert.equal(welcome.snapshot?.seq, stored);
        assert.ok(welcome.last - welcome.from < SNAPSHOT_EVENTS, `${welcome.last - welcome.from} events after the snapshot`);
        const newcomerEvents = newcomer.wire.received.filter(isEvent).filter((event) => event.seq <= welcome.last);
        assert.equal(newcomerEvents.length, welcome.last - welcome.from);
        console.log(`# session newcomer: snapshot at ${welcome.snapshot?.seq}, ${newcomerEvents.length} events after it`);
        await assertConverged([...all, newcomer.session]);
        assert.deepEqual(postTexts(newcomer.session), postTexts(all[0]!));
        assert.equal(chat(newcomer.session).users.length, 4);
      });

      test("a socket killed and reopened within the grace period resumes as the same client; after it, one exit and one enter", async () => {
        const room = "resume";
        const victim = await joinClient(main(), room, sessions);
        const others = [await joinClient(main(), room, sessions), await joinClient(main(), room, sessions)];
        const everyone = [victim, ...others];
        const all = everyone.map(({ session }) => session);
        await waitFor(() => all.every((session) => chat(session).users.length === 3), "three users everywhere");
        for (const [index, session] of all.entries()) session.publish("chat", "post", { text: `hello from ${index}` });
        await assertConverged(all);

        const id = victim.session.clientId!;
        const nickname = chat(all[1]!).nicknameOf(id);
        const connectionsBefore = victim.wire.connections.length;
        const mark = all[0]!.replica!.seq;
        const noticesBefore = all.map((session) => notices(session).length);
        const systemEventsSince = (client: Client, since: number) =>
          client.wire.received.filter(isEvent).filter((frame) => frame.type !== "message" && frame.seq > since);

        // 1. The socket dies (no close handshake); the session reconnects on its own within the grace period.
        victim.wire.network.kill();
        await waitFor(() => victim.wire.connections.length === connectionsBefore + 1 && victim.session.status === "connected", "the victim to reconnect");
        const resumedWelcome = victim.wire.welcomes().at(-1)!;
        assert.equal(resumedWelcome.resumed, true);
        assert.equal(resumedWelcome.client, id);

        // 2. The network goes away for a moment while the others post; they reach the victim once it is back.
        const cutAt = Date.now();
        victim.wire.network.cut();
        await waitFor(() => victim.session.status !== "connected", "the victim to notice");
        const missed = Array.from({ length: 5 }, (_, i) => `missed ${i}`);
        for (const text of missed) all[1]!.publish("chat", "post", { text });
        await waitFor(() => others.every(({ session }) => missed.every((text) => postTexts(session).includes(text))), "the missed posts at the others");
        victim.wire.network.restore();
        await waitFor(
          () => victim.wire.connections.length === connectionsBefore + 2 && victim.session.status === "connected",
          "the victim to reconnect after the cut",
        );
        const away = Date.now() - cutAt;
        await assertConverged(all);
        console.log(`# within grace: back after ${away} ms (grace ${GRACE_MS} ms); ${victim.wire.connections.length} connections`);
        assert.ok(away < GRACE_MS, `the victim was away ${away} ms, not within the grace period`);
        const lastWelcome = victim.wire.welcomes().at(-1)!;
        assert.equal(lastWelcome.resumed, true);
        assert.equal(lastWelcome.snapshot, null, "a resumed client gets only what it missed");
        assert.equal(victim.session.clientId, id);
        for (const session of all) assert.equal(chat(session).nicknameOf(id), nickname);
        for (const client of everyone) assert.deepEqual(systemEventsSince(client, mark), [], "no user-enter or user-exit was sequenced");
        for (const [index, session] of all.entries()) assert.equal(notices(session).length, noticesBefore[index], "no joined/left notice");
        const victimMessages = victim.wire.received.filter((frame): frame is Extract<ServerFrame, { type: "message" }> => frame.type === "message");
        const key = await keyOf(room);
        const victimTexts = await Promise.all(
          victimMessages.map(async (frame) => JSON.parse(await key.openPost(frame.payload, frame.client, frame.id)).data.text as string),
        );
        for (const text of missed) {
          const deliveries = victimTexts.filter((received) => received === text).length;
          assert.equal(deliveries, 1, `"${text}" reached the victim ${deliveries} times`);
          for (const session of all) assert.equal(countOf(postTexts(session), text), 1);
        }
        // Every event reached the victim exactly once, over all its connections.
        assert.deepEqual(victim.wire.ofType("error"), [], "the reflector refused none of the victim's frames");
        const victimSeqs = victim.wire.received.filter(isEvent).map((event) => event.seq);
        assert.equal(new Set(victimSeqs).size, victimSeqs.length, "no event was delivered twice");

        // 3. The network stays away past the grace period: the others see it leave, and it comes back as a new client.
        const mark2 = all[0]!.replica!.seq;
        const noticesBefore2 = all.map((session) => notices(session).length);
        victim.wire.network.cut();
        await waitFor(() => others.every(({ session }) => chat(session).nicknameOf(id) === undefined), "the others to see the victim leave", GRACE_MS + 10_000);
        victim.wire.network.restore();
        await waitFor(() => victim.session.status === "connected" && victim.session.clientId !== id, "the victim to come back as a new client", 15_000);
        await assertConverged(all);
        const newId = victim.session.clientId!;
        const backWelcome = victim.wire.welcomes().at(-1)!;
        assert.equal(backWelcome.resumed, false);
        for (const client of others) {
          const system = systemEventsSince(client, mark2).map((frame) => `${frame.type} ${frame.client}`);
          assert.deepEqual(system, [`user-exit ${id}`, `user-enter ${newId}`]);
        }
        const victimSystem = new Map(systemEventsSince(victim, mark2).map((frame) => [frame.seq, `${frame.type} ${frame.client}`]));
        assert.deepEqual([...victimSystem.values()], [`user-exit ${id}`, `user-enter ${newId}`]);
        all.forEach((session, index) => {
          const added = notices(session)
            .slice(noticesBefore2[index])
            .map((entry) => entry.text);
          assert.equal(added.length, 2, `notices after the grace period: ${added.join(", ")}`);
          assert.equal(added[0], `${nickname} left`);
          assert.match(added[1]!, / joined$/);
          assert.deepEqual(
            chat(session)
              .users.map((user) => user.id)
              .sort(),
            [newId, ...others.map(({ session: other }) => other.clientId!)].sort(),
          );
        });
        console.log(`# after grace: one exit, one enter; came back as ${chat(all[1]!).nicknameOf(newId)} (was ${nickname})`);
      });

      test("posts made offline and resent over dying connections appear exactly once everywhere", async () => {
        const room = "resend";
        const author = await joinClient(main(), room, sessions);
        const observer = await joinClient(main(), room, sessions);
        const all = [author.session, observer.session];
        await waitFor(() => all.every((session) => chat(session).users.length === 2), "two users everywhere");
        const authorId = author.session.clientId!;

        author.wire.network.cut();
        await waitFor(() => author.session.status !== "connected", "the author to notice the cut");
        const offline = Array.from({ length: 5 }, (_, i) => `offline ${i}`);
        for (const text of offline) author.session.publish("chat", "post", { text });
        assert.equal(author.session.pending.length, offline.length, "offline posts wait in pending");

        // Kill 1: the first connection after the cut loses its posts with the connection (nothing reaches the reflector).
        // Kill 2: the next one dies right after its posts went out, before the acks come back.
        // Kill 3: the one after that dies as the first of its own posts comes back.
        const kills: string[] = [];
        /** Sockets killed, or about to be: whatever else the session sends on them is lost. */
        const doomed = new Set<SocketLog>();
        const publishesOn = new Map<SocketLog, number[]>();
        author.wire.beforeSend = (frame, log) => {
          if (frame.type !== "publish") return;
          if (doomed.has(log) && log.socket.readyState !== WebSocket.OPEN) return "drop";
          publishesOn.set(log, [...(publishesOn.get(log) ?? []), frame.id]);
          if (kills.length === 0) {
            // Only the first post is handed to this socket: the session sees it close at once.
            kills.push(`killed while handing it the first of ${author.session.pending.length} posts (lost)`);
            doomed.add(log);
            log.socket.terminate();
            return "drop";
          }
          if (kills.length === 1 && !doomed.has(log) && log.received.some((received) => received.type === "welcome")) {
            doomed.add(log);
            // After the session's loop has sent every pending post on this socket.
            setImmediate(() => {
              kills.push(`killed after sending ${publishesOn.get(log)!.length} posts`);
              log.socket.terminate();
            });
          }
        };
        author.wire.onReceive = (frame, log) => {
          if (kills.length === 2 && !doomed.has(log) && frame.type === "message" && frame.client === authorId) {
            kills.push(`killed on the ack of post ${frame.id}`);
            doomed.add(log);
            log.socket.terminate();
          }
        };
        // More posts while the connection is going up and down.
        author.wire.network.restore();
        await waitFor(() => kills.length >= 1, "the first kill");
        const between = ["between 0", "between 1"];
        for (const text of between) author.session.publish("chat", "post", { text });
        await waitFor(() => kills.length >= 3, "three kills", 20_000);
        author.wire.beforeSend = undefined;
        author.wire.onReceive = undefined;
        await waitFor(() => author.session.status === "connected" && author.session.pending.length === 0, "every post acknowledged", 20_000);
        await assertConverged(all);

        // Frames the session handed to a dying socket must not turn up on the next connection (before its hello).
        assert.deepEqual(author.wire.ofType("error"), [], "the reflector refused none of the author's frames");
        const posts = [...offline, ...between];
        for (const session of all) {
          for (const text of posts) assert.equal(countOf(postTexts(session), text), 1, `"${text}" ${countOf(postTexts(session), text)} times`);
        }
        assert.deepEqual(postTexts(observer.session), posts, "the author's posts in the order it made them");
        assert.equal(author.session.pending.length, 0);
        // The order holds each post id once.
        const ids = observer.wire
          .ofType("message")
          .filter((frame) => frame.client === authorId)
          .map((frame) => frame.id);
        assert.deepEqual(
          ids,
          posts.map((_, index) => index + 1),
        );
        const publishIds = (frames: ClientFrame[]) => frames.flatMap((frame) => (frame.type === "publish" ? [frame.id] : []));
        const perConnection = author.wire.connections.map((log) => {
          const welcome = log.received.find((frame): frame is Welcome => frame.type === "welcome")!;
          const lost = (publishesOn.get(log) ?? []).filter((id) => !publishIds(log.sent).includes(id));
          return `[acked ${welcome.acked}, sent ${publishIds(log.sent).join(",") || "-"}${lost.length > 0 ? `, lost ${lost.join(",")}` : ""}]`;
        });
        const sends = author.wire.sockets.flatMap((log) => publishIds(log.sent)).length + 1;
        console.log(`# resend: ${kills.join("; ")}; connections ${perConnection.join(" ")}; ${sends} publish frames for ${posts.length} posts`);
        assert.ok(sends > posts.length, "some posts went out more than once");

        // The reflector itself drops resent ids: a bare client resends the same ids on resumed connections.
        const first = await RawClient.join(main().host, room);
        const { welcome } = await first.welcomed();
        // Sealed once each, as the client it comes from and with its id: a resend carries the same bytes.
        const sealedPosts = await Promise.all([1, 2, 3, 4, 5].map((n) => first.sealPost({ scope: "chat", event: "post", data: { text: `raw ${n}` } }, n)));
        const rawPayload = (n: number) => sealedPosts[n - 1]!;
        for (const id of [1, 2, 3]) first.publish(rawPayload(id), id);
        await waitFor(() => first.ofType("message").filter((frame) => frame.client === welcome.client).length === 3, "the raw posts' echoes");
        const seqAfterFirst = Math.max(...first.events().map((frame) => frame.seq));
        first.socket.terminate();

        const second = await RawClient.join(main().host, room, { resume: { client: welcome.client, secret: welcome.secret, seq: seqAfterFirst } });
        const resumed = await second.welcomed();
        assert.equal(resumed.welcome.resumed, true);
        assert.equal(resumed.welcome.acked, 3);
        for (const id of [1, 2, 3, 4]) second.publish(rawPayload(id), id);
        // Sent twice on the same connection, too.
        for (const id of [2, 4]) second.publish(rawPayload(id), id);
        await waitFor(() => second.ofType("message").some((frame) => frame.client === welcome.client && frame.id === 4), "the new raw post's echo");

        const third = await RawClient.open(main().host, room);
        second.socket.terminate();
        await third.hello({ client: welcome.client, secret: welcome.secret, seq: 0 });
        const again = await third.welcomed();
        assert.equal(again.welcome.resumed, true);
        assert.equal(again.welcome.acked, 4);
        for (const id of [1, 2, 3, 4]) third.publish(rawPayload(id), id);
        third.publish(rawPayload(5), 5);
        await waitFor(() => postTexts(observer.session).includes("raw 5"), "the last raw post at the observer");
        await assertConverged(all);
        for (const session of all) for (const n of [1, 2, 3, 4, 5]) assert.equal(countOf(postTexts(session), `raw ${n}`), 1, `"raw ${n}" appears once`);
        const rawIds = observer.wire
          .ofType("message")
          .filter((frame) => frame.client === welcome.client)
          .map((frame) => frame.id);
        assert.deepEqual(rawIds, [1, 2, 3, 4, 5], "the reflector sequenced each raw post id once");
        assert.ok(
          [first, second, third].every((raw) => raw.errors().length === 0),
          "a resend is no error",
        );
        console.log(`# raw resend: 5 posts, ${3 + 6 + 5} publish frames, sequenced ids ${rawIds.join(",")}`);
        third.leave();
      });

      test("a drifting replica is outvoted: every session hears of the divergence and the majority's snapshot is stored", async () => {
        const room = "drift";
        const honest1 = await joinClient(small(), room, sessions, DriftingChatModel, { ...MODEL_OPTIONS, drift: 0 });
        const honest2 = await joinClient(small(), room, sessions, DriftingChatModel, { ...MODEL_OPTIONS, drift: 0 });
        const drifter = await joinClient(small(), room, sessions, DriftingChatModel, { ...MODEL_OPTIONS, drift: 1 });
        const clients = [honest1, honest2, drifter];
        const all = clients.map(({ session }) => session);
        await waitFor(() => all.every((session) => chat(session).users.length === 3), "three users everywhere");
        assert.ok(all.every((session) => session.replica!.seq === 3));
        const before = await assertConverged(all);
        assert.ok(before.length > 0, "identical before the first post");

        // Three enters and seven posts: a snapshot falls due at event 10.
        const due = SMALL_SNAPSHOT_EVENTS;
        for (let i = 0; i < due - 3; i++) honest1.session.publish("chat", "post", { text: `post ${i}` });
        await waitFor(() => all.every((session) => session.divergence !== undefined), "the divergence report at every session");
        await waitFor(() => clients.every(({ wire }) => wire.ofType("snapshot-stored").some((frame) => frame.seq === due)), "the snapshot to be stored");

        for (const { wire } of clients) assert.equal(wire.ofType("divergence").length, 1);
        const frame = honest1.wire.ofType("divergence")[0]!;
        assert.equal(frame.seq, due);
        const honestHash = honest1.session.divergence!.ownHash!;
        const driftHash = drifter.session.divergence!.ownHash!;
        assert.notEqual(honestHash, driftHash);
        assert.equal(honest2.session.divergence!.ownHash, honestHash);
        // Within a vote, clients come in the order their hashes arrived.
        assert.deepEqual(
          frame.votes.map((vote) => ({ hash: vote.hash, clients: [...vote.clients].sort() })),
          [
            { hash: honestHash, clients: [honest1.session.clientId!, honest2.session.clientId!].sort() },
            { hash: driftHash, clients: [drifter.session.clientId] },
          ],
        );
        assert.deepEqual(
          all.map((session) => session.divergence!.outvoted),
          [false, false, true],
        );
        assert.ok(all.every((session) => session.divergence!.seq === due));
        const request = clients.map(({ wire }) => wire.ofType("snapshot-request").length);
        assert.equal(request[2], 0, "the drifter is never asked for the snapshot");
        console.log(`# divergence at ${due}: votes ${frame.votes.map((vote) => vote.clients.length).join(" vs ")}; snapshot requests ${request.join(", ")}`);

        // A fresh joiner gets the majority's state.
        const raw = await RawClient.join(small().host, room);
        const { welcome, parts, events } = await raw.welcomed();
        assert.deepEqual(welcome.snapshot, { seq: due, parts: parts.length, hash: honestHash });
        const sealed = parts.map((part) => part.data).join("");
        assert.equal(await sha256Hex(sealed), honestHash, "the stored snapshot is the majority's");
        const key = await keyOf(room);
        const restored = Replica.restore(await key.openSnapshot(sealed, due));
        assert.equal(await sha256Hex(await key.sealSnapshot(restored.serialize(), due)), honestHash, "sealed again, it is what the majority voted");
        assert.equal((restored.root as DriftingChatModel).postCount, due - 3);
        assert.equal((drifter.session.model as DriftingChatModel).postCount, 2 * (due - 3));
        assert.equal(events.length, 1, "only the raw socket's own enter follows the snapshot");
        raw.send({ type: "leave" });
        raw.socket.close();
        await waitFor(() => all.every((session) => chat(session).users.length === 3), "the raw socket's exit");

        const newcomer = await joinClient(small(), room, sessions, DriftingChatModel, { ...MODEL_OPTIONS, drift: 0 });
        assert.equal(newcomer.wire.welcomes()[0]!.snapshot?.seq, due);
        const honest = await assertConverged([honest1.session, honest2.session, newcomer.session]);
        await waitFor(() => drifter.session.replica!.seq === newcomer.session.replica!.seq, "the drifter to apply the same events");
        assert.notEqual(await stateHash(drifter.session.replica!), honest, "the drifter stays apart");
        assert.equal(newcomer.session.divergence, undefined, "the newcomer joined after the divergence");
      });
    });

    describe("room lifetime", () => {
      test(`a room without clients keeps its history across a ${platform} dev restart`, async () => {
        const room = "lifetime-restart";
        const writer = await joinClient(main(), room, sessions);
        const observer = await joinClient(main(), room, sessions);
        for (let i = 0; i < 5; i++) writer.session.publish("chat", "post", { text: `kept ${i}` });
        await waitFor(() => postTexts(observer.session).length === 5, "the posts at the observer");
        const writerName = chat(writer.session).nicknameOf(writer.session.clientId!)!;
        const observerName = chat(observer.session).nicknameOf(observer.session.clientId!)!;
        writer.session.leave();
        await waitFor(() => chat(observer.session).users.length === 1, "the writer's exit");
        const history = chat(observer.session).history.map((entry) => entry.text);
        observer.session.leave();
        // The last exit is written to storage without the server waiting for it; give it a moment before stopping.
        await sleep(500);

        const old = main();
        await old.stop({ keep: true });
        MAIN_SERVER.current = undefined;
        MAIN_SERVER.current = await start({ persistDir: old.persistDir, vars: MAIN_VARS });

        const reader = await joinClient(main(), room, sessions);
        const readerName = chat(reader.session).nicknameOf(reader.session.clientId!)!;
        assert.deepEqual(
          chat(reader.session).history.map((entry) => entry.text),
          [...history, `${observerName} left`, `${readerName} joined`],
        );
        assert.ok(history.includes(`${writerName} left`));
        assert.deepEqual(
          chat(reader.session).users.map((user) => user.id),
          [reader.session.clientId],
        );
        console.log(`# restart: ${chat(reader.session).history.length} history entries survived (seq ${reader.session.replica!.seq})`);
      });

      test("posts the reflector ordered but had not written when it died are sent again and appear once", async () => {
        // Events wait the longest allowed, 5 s, for their batch write here, so the restart below loses the posts' events.
        const vars = { ...MAIN_VARS, WRITE_INTERVAL_MS: "5000" };
        let server = await start({ vars });
        try {
          const room = "unwritten-tail";
          const writer = await joinClient(server, room, sessions);
          const texts = ["one", "two", "three"];
          for (const text of texts) writer.session.publish("chat", "post", { text });
          await waitFor(() => writer.session.pending.length === 0 && postTexts(writer.session).length === 3, "the posts to be ordered");
          await server.stop({ keep: true });
          server = await start({ vars, persistDir: server.persistDir, port: server.port });

          // The writer resumes within its grace period; the room has only its enter, so it sends its posts again.
          await waitFor(
            () => writer.session.status === "connected" && writer.session.pending.length === 0 && postTexts(writer.session).length === 3,
            "the posts to be ordered again",
          );
          const reader = await joinClient(server, room, sessions);
          assert.deepEqual(postTexts(reader.session), texts);
          assert.deepEqual(postTexts(writer.session), texts);
          await assertConverged([writer.session, reader.session]);
        } finally {
          await server.stop({ keep: true });
        }
      });

      test("a room whose clients all left is deleted by the retention alarm, and only after the retention period", async () => {
        const room = "lifetime-retention";
        const writer = await joinClient(small(), room, sessions);
        for (let i = 0; i < 3; i++) writer.session.publish("chat", "post", { text: `retained ${i}` });
        await waitFor(() => postTexts(writer.session).length === 3, "the posts");
        writer.session.leave();
        const leftAt = Date.now();

        // Within the retention period the history is there. This reader then stays past the time the writer's
        // departure armed the alarm for: a room with a client in it is not deleted.
        await sleep(200);
        const early = await joinClient(small(), room, sessions);
        assert.ok(Date.now() - leftAt < RETENTION_MS, "the early reader came within the retention period");
        assert.deepEqual(postTexts(early.session), ["retained 0", "retained 1", "retained 2"]);
        await sleep(RETENTION_MS + 500);
        early.session.publish("chat", "post", { text: "still here" });
        await waitFor(() => postTexts(early.session).includes("still here"), "a post in the occupied room after the first alarm time");
        assert.deepEqual(postTexts(early.session), ["retained 0", "retained 1", "retained 2", "still here"]);
        early.session.leave();
        const emptySince = Date.now();

        // The room is empty and idle: after the retention period (and some slack for the alarm), it is gone.
        await sleep(RETENTION_MS + 1500);
        const late = await joinClient(small(), room, sessions);
        console.log(
          `# retention: joined ${Date.now() - emptySince} ms after the room emptied; seq ${late.session.replica!.seq}, ${chat(late.session).history.length} entries`,
        );
        assert.deepEqual(postTexts(late.session), [], "the deleted room has no posts");
        assert.deepEqual(
          chat(late.session).history.map((entry) => entry.text),
          [`${chat(late.session).nicknameOf(late.session.clientId!)} joined`],
        );
        assert.equal(late.session.replica!.seq, 1, "the log starts afresh");
      });
    });
  });

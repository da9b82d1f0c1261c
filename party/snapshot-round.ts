/**
 * The snapshot rounds of a room: when one falls due, the members' votes, and the upload the reflector stores only if
 * it is what the majority voted for. docs/protocol.md#snapshots-and-divergence describes them.
 */
import { encodeDivergence, encodeSnapshotNotice, majority, type SnapshotPart, type Vote } from "../common/protocol.js";
import type { RoomRecord, StoredRound } from "./room-store.js";
import type { ReflectorSettings } from "./settings.js";

/** What a round needs of its room. */
export interface RoundHost {
  clock(): number;
  /** The clients present now, in the order they joined. */
  present(): string[];
  isPresent(client: string): boolean;
  send(client: string, text: string): void;
  refuse(client: string, code: "out-of-turn" | "bad-frame" | "snapshot-too-large", message: string): void;
  broadcast(text: string): void;
  /** Stores a snapshot the majority voted for, trimming the log before it. */
  store(snapshot: { seq: number; parts: string[]; hash: string }): void;
  /** SHA-256 of a text in hex, at once or later. */
  digest(text: string): string | Promise<string>;
  /** The round changed what the room must write before it sleeps. */
  saved(): void;
  /** The round did something after a check that answered later: the room's next wake-up may have moved. */
  changed(): void;
  /** A snapshot was stored: another round may start, if one is due and it is safe. */
  stored(): void;
}

/** A snapshot point in progress: first the hashes, then one upload from a client of the majority. */
interface Round {
  seq: number;
  /** Clients expected to report a hash, in the order they joined. */
  voters: string[];
  hashes: Map<string, string>;
  deadline: number;
  /** Set once the hashes are counted: clients holding the majority's state, in the order they will be asked... */
  candidates?: string[];
  /** ...and the hash they voted, which the upload must have. */
  hash?: string;
  uploader?: string;
  parts?: (string | undefined)[];
  /** UTF-16 code units uploaded so far. */
  uploaded?: number;
  /** True while a complete upload's hash is being checked. */
  checking?: boolean;
}

/** Groups the hashes reported at a snapshot point, the most common first. */
export function countVotes(hashes: Map<string, string>): Vote[] {
  const byHash = new Map<string, string[]>();
  for (const [client, hash] of hashes) byHash.set(hash, [...(byHash.get(hash) ?? []), client]);
  return [...byHash].map(([hash, clients]) => ({ hash, clients })).sort((a, b) => b.clients.length - a.clients.length);
}

/** The events a room keeps after its snapshot. */
interface UntrimmedLog {
  snapshotSeq: number;
  /** Time of the first of them; undefined when there are none. */
  firstTime: number | undefined;
  /** Their UTF-16 code units. */
  logLength: number;
}

type RoundSettings = Pick<ReflectorSettings, "snapshotEvents" | "snapshotBytes" | "snapshotInterval" | "snapshotGap" | "voteTimeout" | "maxSnapshot">;

export class SnapshotRounds {
  private round: Round | undefined;
  /** The last event at which a round fell due, when, and the code units of the events since. */
  private lastDueSeq: number;
  private lastDueAt: number;
  private dueLength: number;
  /** When the last round started, or failed, in this run of the room: the gap applies between rounds only. */
  private lastRoundAt = -Infinity;
  /** Rounds in a row that ended without a snapshot: each waits twice as long before the next try. */
  private failures: number;

  constructor(
    private readonly host: RoundHost,
    private readonly settings: RoundSettings,
    log: UntrimmedLog,
    record: RoomRecord | undefined,
  ) {
    // Without a record no round has fallen due yet: count from the snapshot, or the room's start, so that a room
    // that sleeps between its events still reaches a round.
    this.lastDueSeq = record?.lastDueSeq ?? log.snapshotSeq;
    this.lastDueAt = record?.lastDueAt ?? log.firstTime ?? host.clock();
    this.dueLength = record?.dueLength ?? log.logLength;
    this.failures = record?.failedRounds ?? 0;
    const stored = record?.round;
    if (stored !== undefined) this.round = { ...stored, hashes: new Map(stored.hashes) };
  }

  /** The room was deleted: the next event is the first of a new room, and no round is owed. */
  restart(): void {
    this.round = undefined;
    this.lastDueSeq = 0;
    this.lastDueAt = this.host.clock();
    this.dueLength = 0;
    this.failures = 0;
    this.lastRoundAt = -Infinity;
  }

  /** What to write so that a room that slept goes on with its rounds. */
  record(): Pick<RoomRecord, "lastDueSeq" | "lastDueAt" | "dueLength" | "failedRounds" | "round"> {
    const round = this.round;
    const stored: StoredRound | undefined =
      round === undefined
        ? undefined
        : {
            seq: round.seq,
            voters: round.voters,
            hashes: [...round.hashes],
            deadline: round.deadline,
            candidates: round.candidates,
            hash: round.hash,
            uploader: round.uploader,
          };
    return { lastDueSeq: this.lastDueSeq, lastDueAt: this.lastDueAt, dueLength: this.dueLength, failedRounds: this.failures, round: stored };
  }

  /**
   * When a round may start although no event comes to start it: one fell due while another was running or within
   * the gap, or the last one ended without a snapshot. Without this a room that goes quiet right then keeps its whole
   * log until someone posts again. Undefined when no round is owed or one is running.
   */
  retryAt(lastSeq: number): number | undefined {
    if (this.round !== undefined || this.host.present().length === 0) return undefined;
    const { snapshotInterval, snapshotGap, voteTimeout } = this.settings;
    // A failed round is tried again even with no event since: at the same point, which nothing was stored for. A
    // full log takes no more events, so only this can bring the snapshot that empties it.
    if (this.failures > 0) return this.lastRoundAt + Math.min(snapshotInterval, voteTimeout * 2 ** (this.failures - 1));
    if (lastSeq === this.lastDueSeq) return undefined;
    // Not for the interval alone: a quiet room sleeps on, and its next event starts the round the interval made due.
    return this.isDue(lastSeq, this.host.clock()) ? this.lastRoundAt + snapshotGap : undefined;
  }

  private isDue(seq: number, now: number): boolean {
    const { snapshotEvents, snapshotBytes, snapshotInterval } = this.settings;
    return seq - this.lastDueSeq >= snapshotEvents || this.dueLength >= snapshotBytes || now - this.lastDueAt >= snapshotInterval;
  }

  /** When the round in progress gives up waiting; undefined when none is. */
  get deadline(): number | undefined {
    return this.round?.deadline;
  }

  /** An event of `length` code units went into the log. */
  counted(length: number): void {
    this.dueLength += length;
  }

  /**
   * Starts a round after event `seq` when enough events, bytes or time have passed since the last one, and at least
   * the gap. Only ever right after an event, with no tick in between: replicas hash their replicated time too, and an
   * event is what brings them all to the same time. A round started at another moment made the chaos run diverge.
   */
  startIfDue(seq: number, force = false): void {
    if (this.round !== undefined) return;
    const voters = this.host.present();
    if (voters.length === 0) return;
    const now = this.host.clock();
    const retryAt = this.failures > 0 ? this.retryAt(seq) : undefined;
    const due = force || this.isDue(seq, now) || (retryAt !== undefined && retryAt <= now);
    if ((seq === this.lastDueSeq && this.failures === 0) || now - this.lastRoundAt < this.settings.snapshotGap || !due) return;
    this.round = { seq, voters, hashes: new Map(), deadline: now + this.settings.voteTimeout };
    this.lastDueSeq = seq;
    this.lastDueAt = now;
    this.lastRoundAt = now;
    this.dueLength = 0;
    this.host.saved();
    // Sent right after event `seq` on every socket, so every replica hashes its state at exactly that point.
    this.host.broadcast(encodeSnapshotNotice("snapshot-due", seq));
  }

  vote(client: string, seq: number, hash: string): void {
    const round = this.round;
    if (round === undefined || round.seq !== seq || round.candidates !== undefined || !round.voters.includes(client)) {
      // A hash for a round that has just closed is a harmless race; one for a round that never opened is not.
      if (seq > this.lastDueSeq) this.host.refuse(client, "out-of-turn", `no snapshot is due at ${seq}`);
      return;
    }
    round.hashes.set(client, hash);
    this.host.saved();
    if (round.voters.every((voter) => round.hashes.has(voter))) this.count();
  }

  /** The round's deadline passed: count the hashes there are, or give up on the uploader. */
  expire(now: number): void {
    const round = this.round;
    if (round === undefined || round.deadline > now) return;
    if (round.candidates === undefined) this.count();
    else this.requestUpload(round.uploader);
  }

  /** A client that went away is no longer waited for. */
  leave(client: string): void {
    const round = this.round;
    if (round === undefined) return;
    if (round.candidates === undefined) {
      round.voters = round.voters.filter((voter) => voter !== client || round.hashes.has(voter));
      this.host.saved();
      if (round.voters.every((voter) => round.hashes.has(voter))) this.count();
    } else if (round.uploader === client) {
      this.requestUpload(client);
    }
  }

  /**
   * Whether `frame` is a part the uploader was asked for and has not sent yet. Such parts take no rate token: a
   * snapshot of many parts goes up at once, and a round takes at most its declared count of them, within
   * `maxSnapshot`.
   */
  awaitsPart(client: string, frame: SnapshotPart): boolean {
    const round = this.round;
    if (round?.uploader !== client || round.seq !== frame.seq || round.checking === true) return false;
    return round.parts === undefined || (round.parts.length === frame.parts && round.parts[frame.part] === undefined);
  }

  /** Whether `client` is the one asked for the snapshot at `seq`: its parts may be as large as a frame can be. */
  isUploader(client: string, seq?: number): boolean {
    return this.round?.uploader === client && (seq === undefined || this.round.seq === seq);
  }

  /**
   * A part of the snapshot from the client asked for it: each part once, all of the count it declared first, and no
   * more than `maxSnapshot` code units in all. When all are in, the upload is stored if it hashes to the vote.
   */
  upload(client: string, frame: SnapshotPart): void {
    const round = this.round;
    if (round === undefined || round.uploader !== client || round.seq !== frame.seq) {
      if (frame.seq > this.lastDueSeq) this.host.refuse(client, "out-of-turn", `no snapshot was requested at ${frame.seq}`);
      return;
    }
    if (round.checking) return;
    round.parts ??= new Array<string | undefined>(frame.parts).fill(undefined);
    if (round.parts.length !== frame.parts)
      return this.host.refuse(client, "bad-frame", `snapshot ${frame.seq} has ${round.parts.length} parts, not ${frame.parts}`);
    if (round.parts[frame.part] !== undefined) return this.host.refuse(client, "bad-frame", `part ${frame.part} of snapshot ${frame.seq} came already`);
    round.uploaded = (round.uploaded ?? 0) + frame.data.length;
    if (round.uploaded > this.settings.maxSnapshot) {
      this.host.refuse(client, "snapshot-too-large", `a snapshot may have ${this.settings.maxSnapshot} characters; this one has more`);
      return this.requestUpload(client);
    }
    round.parts[frame.part] = frame.data;
    if (round.parts.some((part) => part === undefined)) return;
    const parts = round.parts as string[];
    let hash: string | Promise<string>;
    try {
      hash = this.host.digest(parts.join(""));
    } catch {
      hash = "";
    }
    if (typeof hash === "string") return this.checked(round, parts, hash);
    round.checking = true;
    hash
      .catch(() => "")
      .then((checked) => {
        this.checked(round, parts, checked);
        this.host.changed();
      });
  }

  /** Compares the hashes; tells the room when they differ, and asks the majority for the snapshot. */
  private count(): void {
    const round = this.round!;
    const votes = countVotes(round.hashes);
    if (votes.length > 1) this.host.broadcast(encodeDivergence(round.seq, round.voters.length, votes));
    const winner = majority(votes, round.voters.length);
    if (winner === undefined) return this.end(false);
    round.candidates = [...winner.clients];
    round.hash = winner.hash;
    this.requestUpload(undefined);
  }

  /** Asks the next client of the majority for the snapshot, after `failed` did not deliver it. */
  private requestUpload(failed: string | undefined): void {
    const round = this.round!;
    round.candidates = round.candidates!.filter((id) => id !== failed);
    const uploader = round.candidates.find((id) => this.host.isPresent(id));
    if (uploader === undefined) return this.end(false);
    round.uploader = uploader;
    round.parts = undefined;
    round.uploaded = undefined;
    round.checking = undefined;
    round.deadline = this.host.clock() + this.settings.voteTimeout;
    this.host.saved();
    this.host.send(uploader, encodeSnapshotNotice("snapshot-request", round.seq));
  }

  /** Stores an upload that hashes to the majority's vote; one that does not is the uploader's fault: ask the next. */
  private checked(round: Round, parts: string[], hash: string): void {
    if (this.round !== round || round.parts?.every((part, index) => part === parts[index]) !== true) return;
    if (hash !== round.hash) return this.requestUpload(round.uploader);
    this.host.store({ seq: round.seq, parts, hash });
    this.end(true);
    this.host.broadcast(encodeSnapshotNotice("snapshot-stored", round.seq));
    this.host.stored();
  }

  private end(stored: boolean): void {
    this.round = undefined;
    this.failures = stored ? 0 : this.failures + 1;
    // The wait before trying again counts from the failure, not from when the round began.
    if (!stored) this.lastRoundAt = this.host.clock();
    this.host.saved();
  }
}

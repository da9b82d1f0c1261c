/**
 * A member's part in the room's snapshot rounds: seal the state at a snapshot point and vote with the hash of the
 * sealed text, upload it when asked, and read a divergence report. docs/protocol.md#snapshots-and-divergence.
 */
import { sha256Hex } from "../common/crypto.js";
import { majority, splitSnapshot, type ClientFrame, type Vote } from "../common/protocol.js";
import type { RoomKey } from "./room-key.js";
import type { Replica } from "./runtime.js";

/** What the reflector reported when replicas' state hashes differed at a snapshot point. */
export interface Divergence {
  seq: number;
  votes: Vote[];
  /** This replica's hash at `seq`, when it had one. */
  ownHash: string | undefined;
  /** True when this replica is not among the majority (or there is none). */
  outvoted: boolean;
}

export class SnapshotDuty {
  /** The state at the last snapshot point, sealed, kept until the reflector stores a snapshot or asks for this one. */
  #kept: { seq: number; sealed?: string; hash?: string } | undefined;

  readonly #key: RoomKey;

  constructor(key: RoomKey) {
    this.#key = key;
  }

  /**
   * A snapshot point: seals the state exactly as it is after event `seq` and resolves to the vote, or to undefined
   * when this replica is elsewhere or a later point came meanwhile. Sealing is deterministic, so every replica with the
   * same state votes the same hash; without the key, nobody can turn a guess into a hash.
   */
  async vote(seq: number, replica: Replica): Promise<Extract<ClientFrame, { type: "hash" }> | undefined> {
    if (replica.seq !== seq) {
      console.warn(`multiuser-chat: snapshot due at ${seq}, replica at ${replica.seq}`);
      return undefined;
    }
    const kept: { seq: number; sealed?: string; hash?: string } = { seq };
    this.#kept = kept;
    kept.sealed = await this.#key.sealSnapshot(replica.serialize(), seq);
    kept.hash = await sha256Hex(kept.sealed);
    return this.#kept === kept ? { type: "hash", seq, hash: kept.hash } : undefined;
  }

  /** The parts of the state sealed at `seq`, when that is the one kept. */
  upload(seq: number): ClientFrame[] {
    const kept = this.#kept;
    if (kept?.seq !== seq || kept.sealed === undefined) return [];
    const parts = splitSnapshot(kept.sealed);
    return parts.map((data, part) => ({ type: "snapshot", seq, part, parts: parts.length, data }));
  }

  /** The reflector stored a snapshot at `seq`: an older state is no longer needed. */
  stored(seq: number): void {
    if (this.#kept !== undefined && this.#kept.seq <= seq) this.#kept = undefined;
  }

  /** A new client id: what it kept belongs to no round it will be asked about. */
  forget(): void {
    this.#kept = undefined;
  }

  /** What a divergence report means for this replica. */
  divergence(seq: number, voters: number, votes: Vote[]): Divergence {
    const ownHash = this.#kept?.seq === seq ? this.#kept.hash : undefined;
    return { seq, votes, ownHash, outvoted: ownHash === undefined || majority(votes, voters)?.hash !== ownHash };
  }
}

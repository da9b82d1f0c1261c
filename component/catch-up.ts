/**
 * Bringing a replica up to date after a welcome: from the snapshot's parts, from nothing, or (when the client
 * resumed) from its own replica; then the events after it, up to the welcome's `last`. docs/protocol.md describes
 * the welcome.
 */
import { sha256Hex } from "../common/crypto.js";
import type { Welcome } from "../common/protocol.js";
import type { RoomKey } from "./room-key.js";
import { Replica, type ModelClass, type ViewEvent } from "./runtime.js";

/** Where a catch-up stands after a frame. */
export type CatchUpState = { done: false } | { done: true; replica: Replica; notifications: ViewEvent[] } | { done: false; badSnapshot: Error };

export class CatchUp {
  #replica: Replica | undefined;
  readonly #parts: string[] = [];

  /** `replica` is where to start when the welcome sends no snapshot; a snapshot's root must be a `Root`. */
  readonly #key: RoomKey;
  readonly #Root: ModelClass;

  constructor(
    readonly welcome: Welcome,
    key: RoomKey,
    Root: ModelClass,
    replica: Replica | undefined,
  ) {
    this.#key = key;
    this.#Root = Root;
    this.#replica = welcome.snapshot === null ? replica : undefined;
  }

  /** The replica when the welcome needs nothing more; for a welcome with nothing to restore or replay. */
  get state(): CatchUpState {
    const replica = this.#replica;
    if (replica === undefined || replica.seq < this.welcome.last) return { done: false };
    replica.advanceTo(this.welcome.time);
    return { done: true, replica, notifications: replica.takeViewEvents() };
  }

  /** A part of the welcome's snapshot. */
  async part(data: string): Promise<CatchUpState> {
    const snapshot = this.welcome.snapshot;
    this.#parts.push(data);
    if (snapshot !== null && this.#parts.length === snapshot.parts) {
      try {
        this.#replica = await this.#restore(this.#parts.join(""), snapshot);
      } catch (error) {
        return { done: false, badSnapshot: error as Error };
      }
    }
    return this.state;
  }

  /** An event of the catch-up, its payload opened. */
  event(apply: (replica: Replica) => void): CatchUpState {
    // Only a faulty reflector sends an event before the snapshot it announced; it reaches no replica.
    if (this.#replica === undefined) return { done: false };
    apply(this.#replica);
    return this.state;
  }

  /**
   * The snapshot's replica: its parts must hash to what the majority voted, open as every honest replica seals that
   * state, and restore. Anything else is a bad snapshot, whatever went wrong: the reflector stores only uploads that
   * hash to the vote, so it takes a faulty reflector, or members that hold the majority of a round's votes, to send one.
   */
  async #restore(sealed: string, snapshot: { seq: number; hash: string }): Promise<Replica> {
    if ((await sha256Hex(sealed)) !== snapshot.hash) throw new Error("its parts do not hash to the members' vote");
    const replica = Replica.restore(await this.#key.openSnapshot(sealed, snapshot.seq));
    if (!(replica.root instanceof this.#Root)) throw new Error(`its root model is not a ${this.#Root.name}`);
    return replica;
  }
}

/**
 * A client's posts on their way into the room's order: numbered, kept until the reflector has them, sent again after
 * a refusal or a new connection, and paced below the reflector's limits. No I/O: the session core asks it what to
 * send and tells it what came back.
 */
import type { Budget } from "../common/token-bucket.js";
import { firstAllowance, TokenBucket } from "../common/token-bucket.js";
import type { Welcome } from "../common/protocol.js";
import { encodeModelEvent } from "./runtime.js";

/** An event this client published that the reflector has not yet put in the order. */
export interface PendingEvent {
  /** Numbers this client's posts; the reflector sequences each id once, so a resend cannot duplicate it. */
  id: number;
  scope: string;
  event: string;
  data: unknown;
}

/** A pending event with its payload, and the payload sealed for the client and post id it last went out as. */
export interface Outgoing extends PendingEvent {
  plain: string;
  sealed?: { client: string; id: number; text: string };
}

/** Frames a client leaves to the reflector's rate limit for its hello, hashes and leave, beyond its posts. */
const RATE_RESERVE = 5;
/**
 * How long beyond the reflector's write interval (the welcome's `writeInterval`) a post stays resendable after it was
 * ordered. The reflector writes events to storage that long after it orders them; if it dies before, the room comes
 * back without the post, and the next welcome's `acked` says so.
 */
export const UNSTORED_MARGIN = 4000;

export class Outbox {
  #waiting: Outgoing[] = [];
  /** Posts ordered in the last `#unstored` ms, with when: the room may not have stored them yet. */
  #ordered: { post: Outgoing; at: number }[] = [];
  #nextId = 1;
  /** Highest post id sent on the current connection: posts above it go out as the limits allow. */
  #sentUpTo = 0;
  /** This client's copy of the reflector's limits on its posts (its frame rate and its share of the room's), a little below them. */
  #bucket: TokenBucket | undefined;
  /** The limits as last told: the welcome's `rate`, and its `budget` or the latest `budget` frame. */
  #rate: Budget | null = null;
  #budget: Budget | null = null;
  /** How long a post stays resendable after it was ordered: the reflector's write interval and a margin. */
  #unstored = UNSTORED_MARGIN;
  /** Until when nothing goes out: the reflector said when it would take a post it refused. */
  #holdUntil = Number.NEGATIVE_INFINITY;

  /** Posts not yet in the order, oldest first. */
  get pending(): readonly PendingEvent[] {
    return this.#waiting.map(({ id, scope, event, data }) => ({ id, scope, event, data }));
  }

  add(scope: string, event: string, data: unknown): void {
    this.#waiting.push({ id: this.#nextId++, scope, event, data: data ?? null, plain: encodeModelEvent(scope, event, data) });
  }

  /**
   * A welcome on a new connection: posts the reflector already has leave; ordered ones the room lost in a crash go out
   * again, ahead of the newer ones (only a room that knows this client can say which it lost); a new client id
   * numbers its posts afresh; everything waiting is sent again, paced by the limits the welcome tells.
   */
  welcomed(welcome: Welcome, now: number): void {
    const lost = welcome.resumed || welcome.acked > 0 ? this.#ordered.map(({ post }) => post) : [];
    this.#waiting = [...lost, ...this.#waiting].filter((pending) => pending.id > welcome.acked);
    this.#ordered = [];
    if (!welcome.resumed) {
      this.#waiting = this.#waiting.map((pending, index) => ({ ...pending, id: index + 1 }));
      this.#nextId = this.#waiting.length + 1;
      // A new client's share at the reflector starts with half a second's worth, not a burst: so does its copy here.
      this.#bucket = undefined;
      this.#holdUntil = Number.NEGATIVE_INFINITY;
    }
    this.#sentUpTo = 0;
    this.#rate = welcome.rate;
    this.#budget = welcome.budget;
    this.#unstored = welcome.writeInterval + UNSTORED_MARGIN;
    this.#pace(now);
  }

  /** The client's share of the room's posts changed. */
  budgetChanged(budget: Budget, now: number): void {
    this.#budget = budget;
    this.#pace(now);
  }

  /**
   * The reflector refused a post: every pending post goes out again, in order (those it has are dropped as
   * duplicates), and none before `wait` ms from `now`, however many more are published meanwhile.
   */
  refused(now: number, wait: number): void {
    this.#sentUpTo = 0;
    this.#holdUntil = Math.max(this.#holdUntil, now + wait);
  }

  /**
   * The post to send now, or how long until the limits allow one; undefined when every post went out. Taking a post
   * takes a token: send it.
   */
  next(now: number): { post: Outgoing } | { wait: number } | undefined {
    const post = this.#waiting.find((pending) => pending.id > this.#sentUpTo);
    if (post === undefined) return undefined;
    if (now < this.#holdUntil) return { wait: this.#holdUntil - now };
    if (this.#bucket !== undefined && !this.#bucket.take(now)) return { wait: this.#bucket.waitTime(now) };
    return { post };
  }

  /** `post` went out on this connection. */
  sent(post: Outgoing): void {
    this.#sentUpTo = post.id;
  }

  /**
   * Own posts up to `id` are in the order now; true when the list of pending posts changed. Both lists are in order
   * (the outbox by id, `ordered` by time), so only their heads change: a client posting thousands a second must not
   * scan either list per acknowledgement. Only pruned while connected: a post ordered just before the connection
   * dropped stays until the next welcome.
   */
  acknowledge(id: number, now: number): boolean {
    const expired = this.#ordered.findIndex(({ at }) => now - at < this.#unstored);
    this.#ordered.splice(0, expired === -1 ? this.#ordered.length : expired);
    let done = 0;
    while (done < this.#waiting.length && this.#waiting[done]!.id <= id) this.#ordered.push({ post: this.#waiting[done++]!, at: now });
    this.#waiting.splice(0, done);
    return done > 0;
  }

  /**
   * Paces posts a little below the tighter of the connection's rate limit and this client's share of the room's
   * posts, leaving room in the rate for hashes, acknowledgements and the rest.
   */
  #pace(now: number): void {
    const limits = [this.#rate, this.#budget].filter((limit) => limit !== null);
    if (limits.length === 0) {
      this.#bucket = undefined;
      return;
    }
    const perSecond = Math.min(...limits.map((limit) => limit.perSecond)) * 0.9;
    const burst = Math.max(1, Math.min(this.#rate === null ? Infinity : this.#rate.burst - RATE_RESERVE, this.#budget?.burst ?? Infinity));
    if (this.#bucket === undefined) this.#bucket = new TokenBucket(perSecond, burst, now, firstAllowance({ perSecond, burst }));
    else this.#bucket.retune(perSecond, burst, now);
  }
}

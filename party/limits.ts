/**
 * What one connection, one client and one room may send: the frame rate limit that stops floods, each client's share
 * of the room's posts, and the clock those limits read.
 */
import type { ReflectorSettings } from "./settings.js";
import { TokenBucket, type Budget } from "../common/token-bucket.js";

/**
 * A connection's allowance: a token bucket that holds up to `burst` tokens and refills at `rate` per second, and
 * the times of its recent rate-limited refusals, to tell a burst from a flood.
 */
export class RateLimiter {
  private readonly bucket: TokenBucket;
  /** Times of the latest `floodRefusals + 1` refusals, oldest first. */
  private readonly refusals: number[] = [];

  constructor(
    private readonly limits: Pick<ReflectorSettings, "rateLimit" | "rateBurst" | "floodRefusals">,
    now: number,
  ) {
    this.bucket = new TokenBucket(limits.rateLimit, limits.rateBurst, now);
  }

  /** Takes a token for a frame sent at `now`: false when the bucket is empty and the frame must be refused. */
  take(now: number): boolean {
    return this.bucket.take(now);
  }

  /** Records a refusal at `now`; true when there have been more than `floodRefusals` within one refill window. */
  refused(now: number): boolean {
    const { rateLimit, rateBurst, floodRefusals } = this.limits;
    this.refusals.push(now);
    if (this.refusals.length <= floodRefusals) return false;
    while (this.refusals.length > floodRefusals + 1) this.refusals.shift();
    const window = (rateBurst / rateLimit) * 1000;
    return now - this.refusals[0]! < window;
  }
}

/** Seconds of a client's share it may post at once. */
const BUDGET_SECONDS = 3;

/**
 * Each client's share of the room's posts when `clients` are in it: `roomRate` divided among them, at most the
 * connection's rate limit, with a burst of a few seconds' worth (at least one post). A room without a rate of its own
 * (`roomRate` infinite) leaves each client only its connection's rate limit.
 */
export function budgetFor(settings: Pick<ReflectorSettings, "roomRate" | "rateLimit" | "rateBurst">, clients: number): Budget {
  if (!Number.isFinite(settings.roomRate)) return { perSecond: Infinity, burst: Infinity };
  const perSecond = Math.min(settings.rateLimit, settings.roomRate / Math.max(1, clients));
  return { perSecond, burst: Math.max(1, Math.min(settings.rateBurst, Math.floor(perSecond * BUDGET_SECONDS))) };
}

/** How far ahead of the reflector's clock a client's account of when it sent a frame may run. */
export const SKEW_ALLOWANCE = 1000;

/**
 * When a connection's frames were sent, as the limits count them. A client stamps each frame with `t`, the
 * milliseconds since it received its welcome by its own clock; the reflector places that after the time it sent the
 * welcome. So frames that waited while the reflector was busy count as sent when they were, and a client that keeps
 * within its rate is never refused because the server fell behind. A client cannot gain by it: the time never runs
 * backwards, nor more than SKEW_ALLOWANCE ahead of the reflector's clock. Frames without `t` count as sent when they
 * are handled.
 */
export class SendClock {
  private origin: number | undefined;
  private last = -Infinity;

  /** The welcome went out at `now`: `t` counts from here. */
  welcomed(now: number): void {
    this.origin = now;
  }

  /** When the frame handled at `now`, stamped `t`, counts as sent. */
  at(now: number, t: number | undefined): number {
    const claimed = t === undefined || this.origin === undefined ? now : Math.min(this.origin + t, now + SKEW_ALLOWANCE);
    this.last = Math.max(this.last, claimed);
    return this.last;
  }
}

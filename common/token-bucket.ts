/**
 * A token bucket: holds up to `burst` tokens and refills at `perSecond` tokens per second. The reflector keeps one per
 * connection to limit its rate, one per client for its share of the room's posts and one per room for newcomers; a
 * client keeps its own copy of its limits so it never crosses them.
 */
export class TokenBucket {
  #tokens: number;
  #refilledAt: number;
  #perSecond: number;
  #burst: number;

  constructor(
    perSecond: number,
    burst: number,
    now: number,
    /** Tokens it holds at first; full by default. */
    initial = burst,
  ) {
    this.#perSecond = perSecond;
    this.#burst = burst;
    this.#tokens = Math.min(initial, burst);
    this.#refilledAt = now;
  }

  /** Takes a token at `now`; false when the bucket is empty. An infinite limit always has one. */
  take(now: number): boolean {
    if (this.#perSecond === Infinity || this.#burst === Infinity) return true;
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Milliseconds from `now` until a token is there. */
  waitTime(now: number): number {
    if (this.#perSecond === Infinity || this.#burst === Infinity) return 0;
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) * 1000) / this.#perSecond);
  }

  /** From `now` on, refills at `perSecond` up to `burst`; what it holds stays, up to the new burst. */
  retune(perSecond: number, burst: number, now: number): void {
    this.#refill(now);
    this.#perSecond = perSecond;
    this.#burst = burst;
    this.#tokens = Math.min(this.#tokens, burst);
  }

  #refill(now: number): void {
    const elapsed = Math.max(0, now - this.#refilledAt);
    this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed * this.#perSecond) / 1000);
    this.#refilledAt = Math.max(this.#refilledAt, now);
  }
}

/** Posts per second a client may make, and at once. */
export interface Budget {
  perSecond: number;
  burst: number;
}

/**
 * What a newcomer's share of the room's posts holds at first, at the reflector and in the session alike: half a second's worth (at least one post), not a whole burst, so that
 * churning through new identities (at most `joinRate` a second) gains less than one more client's share.
 */
export const firstAllowance = (budget: Budget) => Math.min(budget.burst, Math.max(1, Math.floor(budget.perSecond / 2)));

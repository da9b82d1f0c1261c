/**
 * A token bucket: holds up to `burst` tokens and refills at `perSecond` tokens per second. The reflector keeps
 * one per connection to limit its rate; a client keeps its own copy of the same limit so it never crosses it.
 */
export class TokenBucket {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.refilledAt = now;
  }

  /** Takes a token at `now`; false when the bucket is empty. An infinite limit always has one. */
  take(now: number): boolean {
    if (this.perSecond === Infinity || this.burst === Infinity) return true;
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds from `now` until a token is there. */
  waitTime(now: number): number {
    if (this.perSecond === Infinity || this.burst === Infinity) return 0;
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.perSecond);
  }

  private refill(now: number): void {
    const elapsed = Math.max(0, now - this.refilledAt);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.perSecond) / 1000);
    this.refilledAt = now;
  }
}

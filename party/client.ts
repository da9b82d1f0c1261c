/** A client of a room, and the connection a socket is to the room from its challenge on. */
import type { TokenBucket } from "../common/token-bucket.js";
import type { Receiver } from "./delivery.js";
import type { RateLimiter, SendClock } from "./limits.js";

/** One client of the room: present with a socket, or away within its grace period. */
export interface Client<Socket> {
  id: string;
  secret: string;
  /** Highest post id sequenced for this client: a post with an id not above it is a resend. */
  lastPost: number;
  /** Its share of the room's posts; kept across its connections, so reconnecting gains nothing. */
  budget: TokenBucket;
  connection: Connection<Socket> | undefined;
  /** While the socket is gone: when the grace period ends. */
  awayUntil: number | undefined;
  /**
   * Set for a client the room loaded from storage without a socket: it saw the previous run of the room, whose last
   * events may not have been written before it stopped. Cleared by its first welcome in this run.
   */
  earlierRun?: boolean;
}

/**
 * One open socket: the client it said hello as (none yet), the challenge its hello answers, its rate limit, when it
 * was last heard from, and its account of what was sent to it. While its hello is checked, its next frames wait.
 */
export interface Connection<Socket> extends Receiver<Socket> {
  client: Client<Socket> | undefined;
  nonce: string;
  limiter: RateLimiter;
  clock: SendClock;
  opened: number;
  lastHeard: number;
  held?: (string | ArrayBuffer | ArrayBufferView)[];
}

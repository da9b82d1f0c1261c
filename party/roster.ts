/**
 * Who is in a room: the clients present on a socket and those away within their grace period, in the order they
 * joined, each with its resume secret and its share of the room's posts; and for a while the clients whose grace
 * period ended, so that a late return learns which of its posts got through. The room's store holds what a restarted
 * room must know of them.
 */
import { encodeBudget } from "../common/protocol.js";
import { firstAllowance, TokenBucket, type Budget } from "../common/token-bucket.js";
import type { Client } from "./client.js";
import { budgetFor } from "./limits.js";
import type { RoomStore } from "./room-store.js";
import type { ReflectorSettings } from "./settings.js";

/** How long, and for how many clients, the reflector remembers a client after its grace period ended. */
const RETIRED_MEMORY = 60 * 60 * 1000;
const MAX_RETIRED = 1000;

/** What the roster needs of its room. */
export interface RosterHost {
  /** The room's store now: deleting the room replaces it. */
  store(): RoomStore;
  newToken(): string;
  /** Sends a frame to every present client. */
  broadcast(text: string): void;
}

type RosterSettings = Pick<ReflectorSettings, "grace" | "roomRate" | "rateLimit" | "rateBurst">;

/** Compares secrets in time independent of where they differ. */
function sameSecret(a: string, b: string): boolean {
  let difference = a.length ^ b.length;
  for (let index = 0; index < Math.max(a.length, b.length); index++) difference |= (a.charCodeAt(index) | 0) ^ (b.charCodeAt(index) | 0);
  return difference === 0;
}

export class Roster<Socket> {
  /** Present and away clients by id, in the order they joined. */
  private readonly clients = new Map<string, Client<Socket>>();
  /** Each client's share of the room's posts, as last told. */
  private share: Budget;

  constructor(
    private readonly host: RosterHost,
    private readonly settings: RosterSettings,
  ) {
    this.share = budgetFor(settings, 0);
  }

  /**
   * Takes back the clients the store counts as present, each with the last post the room ordered for it, as clients
   * of an earlier run. Each starts away: those that were present get a grace period from `now`, which ends early when
   * their socket is taken back or they resume.
   */
  restore(now: number): void {
    const store = this.host.store();
    const lastPosts = new Map(Object.entries(store.snapshot?.lastPosts ?? {}));
    for (const event of store.replay()) if (event.type === "message") lastPosts.set(event.client, event.id);
    for (const [id, { secret, awayUntil }] of store.clients) {
      const client = this.add(id, secret, now);
      Object.assign(client, { lastPost: lastPosts.get(id) ?? 0, awayUntil: awayUntil ?? now + this.settings.grace, earlierRun: true });
    }
    this.share = budgetFor(this.settings, this.clients.size);
  }

  /**
   * After `restore` and the sockets' return: a grace period that starts now is written down. Were it only in memory,
   * every later wake-up of the room would start it again, and a client whose socket died with the server would never
   * leave.
   */
  writeGracePeriods(): void {
    const store = this.host.store();
    for (const [id, { secret, awayUntil }] of store.clients) {
      const client = this.clients.get(id)!;
      if (awayUntil === undefined && client.connection === undefined) store.rememberClient(id, { secret, awayUntil: client.awayUntil });
    }
  }

  /** Clients present or away. */
  get size(): number {
    return this.clients.size;
  }

  /** Each client's share of the room's posts, as last told. */
  get budget(): Budget {
    return this.share;
  }

  get(id: string): Client<Socket> | undefined {
    return this.clients.get(id);
  }

  /** Every client, present or away, in the order they joined: a copy, so the room may change the roster meanwhile. */
  list(): Client<Socket>[] {
    return [...this.clients.values()];
  }

  /** The ids of the clients present now, in the order they joined. */
  present(): string[] {
    return this.list()
      .filter((client) => client.connection !== undefined)
      .map((client) => client.id);
  }

  isPresent(id: string): boolean {
    return this.clients.get(id)?.connection !== undefined;
  }

  /** When the first grace period that runs ends; Infinity when none does. Builds nothing: the room asks often. */
  firstGraceEnd(): number {
    let end = Infinity;
    for (const client of this.clients.values()) if (client.awayUntil !== undefined && client.awayUntil < end) end = client.awayUntil;
    return end;
  }

  /** Highest post id sequenced for each client: a snapshot keeps them, as the events that carried them are trimmed. */
  lastPosts(): Record<string, number> {
    return Object.fromEntries(this.list().map((client) => [client.id, client.lastPost]));
  }

  /** The client resume credentials name, if the room counts it; "taken" when the secret is not that client's. */
  resumable(id: string, secret: string): Client<Socket> | "taken" | undefined {
    const known = this.clients.get(id);
    if (known === undefined) return undefined;
    return sameSecret(known.secret, secret) ? known : "taken";
  }

  /** The last post the room ordered for the retired client resume credentials name; 0 when they name none. */
  retiredLastPost(id: string, secret: string): number {
    const retired = this.host.store().retired.get(id);
    return retired !== undefined && sameSecret(retired.secret, secret) ? retired.lastPost : 0;
  }

  /** A newcomer, with an id no client present, away or retired has, and a fresh secret. Not written down yet. */
  join(now: number): Client<Socket> {
    const retired = this.host.store().retired;
    let id = this.host.newToken();
    while (this.clients.has(id) || retired.has(id)) id = this.host.newToken();
    return this.add(id, this.host.newToken(), now);
  }

  /** Writes down that the room counts `client` as present, with no grace period running: it joined, or came back. */
  remember(client: Client<Socket>): void {
    this.host.store().rememberClient(client.id, { secret: client.secret });
  }

  /** A client's socket is gone: it stays in the room, away, for `grace`. */
  away(client: Client<Socket>, now: number, grace: number): void {
    client.connection = undefined;
    client.awayUntil = now + grace;
    this.host.store().rememberClient(client.id, { secret: client.secret, awayUntil: client.awayUntil });
  }

  /** Whether `client` is still in the room. */
  has(client: Client<Socket>): boolean {
    return this.clients.get(client.id) === client;
  }

  /** A client leaves the room; `retire` it once its exit is in the log. */
  remove(client: Client<Socket>): void {
    this.clients.delete(client.id);
  }

  /** Remembers a client that left, for RETIRED_MEMORY, instead of as present; the others get a larger share. */
  retire(client: Client<Socket>, now: number): void {
    const store = this.host.store();
    store.forgetClient(client.id);
    store.rememberRetired(client.id, { secret: client.secret, lastPost: client.lastPost, until: now + RETIRED_MEMORY });
    if (store.retired.size > MAX_RETIRED) store.forgetRetired(store.retired.keys().next().value!);
    this.retell();
  }

  /** Forgets the retired clients whose time is up. */
  forgetRetired(now: number): void {
    const store = this.host.store();
    for (const [id, { until }] of [...store.retired]) if (until <= now) store.forgetRetired(id);
  }

  /** Each client's share of the room's posts changed with the number of clients: tell them, so they pace their posts. */
  retell(): void {
    const budget = budgetFor(this.settings, this.clients.size);
    if (budget.perSecond === this.share.perSecond && budget.burst === this.share.burst) return;
    this.share = budget;
    if (Number.isFinite(budget.perSecond)) this.host.broadcast(encodeBudget(budget));
  }

  private add(id: string, secret: string, now: number): Client<Socket> {
    const budget = budgetFor(this.settings, this.clients.size + 1);
    const client: Client<Socket> = {
      id,
      secret,
      lastPost: 0,
      budget: new TokenBucket(budget.perSecond, budget.burst, now, firstAllowance(budget)),
      connection: undefined,
      awayUntil: undefined,
    };
    this.clients.set(id, client);
    return client;
  }
}

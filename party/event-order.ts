/**
 * The room's one order of events: each event gets the next sequence number and the room's replicated time, and goes
 * into the log. Replicated time never runs backwards; between events a tick moves it on, when a replica has model work
 * due then. The room record keeps the time and the tick asked for, since a tick moves the time without an event.
 */
import { encodeTick, type ReflectedEvent } from "../common/protocol.js";
import type { RoomRecord, RoomStore } from "./room-store.js";
import type { WriteSchedule } from "./write-schedule.js";

/** Replicated time never runs backwards, even when the server's clock is adjusted. */
export const stampTime = (clock: number, lastTime: number) => Math.max(clock, lastTime);

/** An event as the room hands it to the order, before its stamp. */
type Unstamped =
  | { type: "message"; client: string; id: number; payload: string }
  | { type: "user-enter"; client: string; profile?: string }
  | { type: "user-exit"; client: string };

/** What the order needs of its room. */
export interface OrderHost {
  clock(): number;
  /** The room's store now: deleting the room replaces it. */
  store(): RoomStore;
  /** An event of `length` code units went into the log: a snapshot falls due after so many. */
  counted(length: number): void;
  /** Whether any client is present: without one, nobody needs a tick. */
  anyonePresent(): boolean;
  /** Sends a frame to every present client. */
  broadcast(text: string): void;
}

export class EventOrder {
  private current: number;
  /** The earliest time the replicas asked to be ticked at: a model has work due then. */
  private tickAt: number | undefined;

  constructor(
    private readonly host: OrderHost,
    private readonly writes: WriteSchedule,
    store: RoomStore,
  ) {
    this.current = Math.max(store.lastTime, store.room?.time ?? 0);
    this.tickAt = store.room?.tickAt;
  }

  /** The room's replicated time: its last event's, or a later tick's. */
  get time(): number {
    return this.current;
  }

  /** When the replicas asked to be ticked; undefined when they did not. */
  get tickDue(): number | undefined {
    return this.tickAt;
  }

  /** Whether replicated time is still the last event's: no tick has moved it on since. */
  get atLastEvent(): boolean {
    return this.current === this.host.store().lastTime;
  }

  /** What the room record keeps of the order besides its log. */
  saved(): Pick<RoomRecord, "time" | "tickAt"> {
    return { time: this.current, tickAt: this.tickAt };
  }

  /** Stamps, stores and returns the encoded event. */
  record(event: Unstamped): string {
    this.current = stampTime(this.host.clock(), this.current);
    // The event carries time past a requested tick: the replicas run their due work on the way to it.
    if (this.tickAt !== undefined && this.current >= this.tickAt) this.tickAt = undefined;
    const store = this.host.store();
    const seq = store.lastSeq + 1;
    // Built field by field so that every event's keys come in the documented order.
    const time = this.current;
    const stamped: ReflectedEvent =
      event.type === "message"
        ? { type: "message", seq, time, client: event.client, id: event.id, payload: event.payload }
        : event.type === "user-enter" && event.profile !== undefined
          ? { type: "user-enter", seq, time, client: event.client, profile: event.profile }
          : { type: event.type, seq, time, client: event.client };
    this.writes.willStore();
    const text = store.append(stamped);
    this.host.counted(text.length);
    this.writes.stored();
    return text;
  }

  /** A replica has model work due at `time`: tick then, unless an event carries time past it first. */
  requestTick(time: number): void {
    if (time <= this.current || (this.tickAt !== undefined && this.tickAt <= time)) return;
    this.tickAt = time;
    this.writes.saveRoom();
  }

  /** Ticks the replicas when the tick they asked for is due at `now`. */
  tick(now: number): void {
    if (this.tickAt === undefined || this.tickAt > now) return;
    this.tickAt = undefined;
    // Nobody to tick: the replicas ask again when they come back.
    if (this.host.anyonePresent()) {
      this.current = stampTime(now, this.current);
      this.host.broadcast(encodeTick(this.current));
    }
    this.writes.saveRoom();
  }

  /** The room was deleted: its time starts again from nothing. */
  reset(): void {
    this.current = 0;
    this.tickAt = undefined;
  }
}

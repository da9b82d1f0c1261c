/**
 * When what waits for storage is written. Events and changes of the room record are not written one by one: the
 * first to wait makes a write due within `writeInterval`, and that write takes everything waiting by then, so that
 * it is stored before the room can sleep. A `writeInterval` of 0 writes each at once.
 */

/** What the schedule needs of its room. */
export interface WriteHost {
  clock(): number;
  /** Events appended to the log and not written yet. */
  unwrittenEvents(): number;
  /** Writes the waiting events, then the room record when `room`. */
  write(room: boolean): void;
}

export class WriteSchedule {
  /** When what waits must be written. */
  private dueAt = Infinity;
  /** Whether the room record (see `saveRoom`) changed since it was written. */
  private roomChanged = false;

  constructor(
    private readonly host: WriteHost,
    private readonly writeInterval: number,
  ) {}

  /** When the next write is due; Infinity when nothing waits. */
  get due(): number {
    return this.unwritten ? this.dueAt : Infinity;
  }

  /**
   * Something is about to wait for storage: when nothing did, it is due within `writeInterval`. (Storing a client
   * record writes the waiting events early; that is harmless.)
   */
  willStore(): void {
    if (!this.unwritten) this.dueAt = this.host.clock() + this.writeInterval;
  }

  /** Something now waits for storage: without a `writeInterval` it is written at once. */
  stored(): void {
    if (this.writeInterval === 0) this.flush();
  }

  /** What the room must remember across a sleep besides its log and clients changed: write it with the next flush. */
  saveRoom(): void {
    this.willStore();
    this.roomChanged = true;
    this.stored();
  }

  /** Writes everything that waits for storage. */
  flush(): void {
    this.host.write(this.roomChanged);
    this.roomChanged = false;
    this.dueAt = Infinity;
  }

  /** The room's storage was deleted: nothing waits any more. */
  clear(): void {
    this.dueAt = Infinity;
    this.roomChanged = false;
  }

  /** Whether anything waits to be written: events, or a change of the room record. */
  private get unwritten(): boolean {
    return this.host.unwrittenEvents() > 0 || this.roomChanged;
  }
}

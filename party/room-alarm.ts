/** The part of Durable Object storage that holds a room's one alarm. */
export interface AlarmStorage {
  getAlarm(): Promise<number | null>;
  setAlarm(time: number): Promise<void>;
  deleteAlarm(): Promise<void>;
}

/**
 * A room's one alarm, kept at the reflector's next due time (`nextWakeAt`). Every deadline goes through it, none
 * through `setTimeout`, which would keep a Durable Object awake: a room with nothing due sleeps until its alarm.
 * It remembers what it armed, so that a frame that changes nothing due costs no storage operation.
 */
export class RoomAlarm {
  private armedAt: number | undefined;

  constructor(private readonly storage: AlarmStorage) {}

  /** Reads the alarm a room armed before it slept. */
  async load(): Promise<void> {
    this.armedAt = (await this.storage.getAlarm()) ?? undefined;
  }

  /** Arms the alarm for `at`, or disarms it when nothing is due. */
  set(at: number | undefined): void {
    if (at === this.armedAt) return;
    this.armedAt = at;
    const operation = at === undefined ? this.storage.deleteAlarm() : this.storage.setAlarm(at);
    operation.catch((error: unknown) => console.error("setting the room's alarm failed", error));
  }

  /** The alarm went off: the platform disarmed it. */
  fired(): void {
    this.armedAt = undefined;
  }
}

import type * as Party from "partykit/server";
import { DEFAULT_TICK_INTERVAL, Reflector } from "./reflector.js";

/** 96 random bits, base64url: unguessable, so a client id cannot be claimed by someone else. */
function newClientId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

/** The PartyKit adapter: one room is one session, and all its logic lives in `Reflector`. */
export default class ReflectorRoom implements Party.Server {
  readonly options: Party.ServerOptions = { hibernate: false };
  private reflector!: Reflector<Party.Connection>;
  private tickTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly room: Party.Room) {}

  async onStart(): Promise<void> {
    this.reflector = await Reflector.open({
      room: this.room.id,
      storage: this.room.storage,
      tickInterval: Number(this.room.env.TICK_INTERVAL_MS ?? DEFAULT_TICK_INTERVAL),
      clock: Date.now,
      newClientId,
    });
  }

  onConnect(connection: Party.Connection): void {
    this.reflector.connect(connection);
    this.scheduleTick();
  }

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection): void {
    this.reflector.receive(sender, message);
  }

  onClose(connection: Party.Connection): void {
    this.reflector.disconnect(connection);
  }

  onError(connection: Party.Connection): void {
    this.reflector.disconnect(connection);
  }

  /** One timer per room, re-armed from the reflector's own idea of when the next tick is due. */
  private scheduleTick(): void {
    if (this.tickTimer !== undefined) return;
    const delay = this.reflector.nextTickIn();
    if (delay === undefined) return;
    this.tickTimer = setTimeout(() => {
      this.tickTimer = undefined;
      this.reflector.tick();
      this.scheduleTick();
    }, delay);
  }
}

import type * as Party from "partykit/server";

/**
 * The floor `npm run bench` measures the reflector against: a PartyKit room that only stamps each frame with a
 * sequence number and the server's time and sends it to everyone, the sender included. No validation, ids,
 * limits, storage, snapshots or ticks.
 */
export default class BaselineRoom implements Party.Server {
  readonly options: Party.ServerOptions = { hibernate: false };
  private seq = 0;

  constructor(readonly room: Party.Room) {}

  onMessage(message: string | ArrayBuffer | ArrayBufferView): void {
    this.room.broadcast(JSON.stringify({ seq: ++this.seq, time: Date.now(), payload: String(message) }));
  }
}

import { routePartykitRequest, Server, type Connection } from "partyserver";

/**
 * The floor `npm run bench` measures the reflector against: a room that only stamps each frame with a sequence
 * number and the server's time and sends it to every connection, the sender included. No validation, ids, limits,
 * storage, snapshots or alarms. Bound as `Main`, as the reflector is, so the same load client finds it at
 * `/parties/main/ROOM`.
 *
 * Hibernatable, like the reflector's adapter (party/worker.ts): workerd then accepts the sockets itself and hands
 * each frame to the object's `webSocketMessage`, another path than a plain socket's event listeners, so a ratio
 * compares what the rooms do with a frame, not two socket APIs.
 */
export class Main extends Server {
  static override options = { hibernate: true };
  /**
   * Counted on from the clock (in thousandths of a millisecond), not from 0: workerd evicts a quiet hibernatable room,
   * in the saturation scenario 5 s after 5 s of load (while the reflector runs), and the next frame wakes a new
   * instance. Without storage, the clock keeps the numbers rising across that, as long as fewer than 1,000 frames
   * arrive in a millisecond.
   */
  private seq = Date.now() * 1000;

  override onMessage(_sender: Connection, message: string | ArrayBuffer | ArrayBufferView): void {
    this.broadcast(JSON.stringify({ seq: ++this.seq, time: Date.now(), payload: String(message) }));
  }
}

export default {
  async fetch(request: Request, env: Record<string, unknown>): Promise<Response> {
    return (await routePartykitRequest(request, env)) ?? new Response("Not found\n", { status: 404 });
  },
};

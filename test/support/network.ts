/**
 * A network for one headless client that a test can break: `Session` gets `network.WebSocket`, and the test kills
 * its sockets the way a dropped connection would (no close handshake) or keeps new ones from connecting.
 */
import WebSocket from "ws";

/** Port 9 (discard) on loopback: nothing listens there, so a connection is refused at once. */
const UNREACHABLE = "ws://127.0.0.1:9/";

export class TestNetwork {
  /** While true, new sockets fail to connect, as with the network gone. */
  down = false;
  /** Sockets made through this network that are not closed yet. */
  readonly sockets = new Set<WebSocket>();
  /** Pass this to `Session.join` as its `WebSocket`. */
  readonly WebSocket: new (
    url: string | URL,
    protocols?: string | string[],
  ) => WebSocket;

  constructor() {
    const network = this;
    this.WebSocket = class extends WebSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(network.down ? UNREACHABLE : url, protocols);
        network.sockets.add(this);
        this.once("close", () => network.sockets.delete(this));
      }
    };
  }

  /** Drops every open socket without a closing handshake; the client reconnects on its own. */
  kill(): void {
    for (const socket of this.sockets) socket.terminate();
  }

  /** The network goes away: open sockets die and new ones cannot connect until `restore`. */
  cut(): void {
    this.down = true;
    this.kill();
  }

  restore(): void {
    this.down = false;
  }
}

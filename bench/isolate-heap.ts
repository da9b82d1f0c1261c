/**
 * The JavaScript heap of the isolate that runs a server's rooms, read through `wrangler dev`'s DevTools inspector:
 * a Worker's Durable Objects share its isolate, and Cloudflare's 128 MB limit is that isolate's, while the rooms'
 * workerd's resident memory also holds workerd's own.
 *
 * wrangler's inspector proxy holds the one session with the isolate (its logs come through it) and relays one
 * DevTools client into it at a time, with the isolate's events and its own messages' answers; this is that client.
 */
import WebSocket from "ws";

/** A reading of Runtime.getHeapUsage, in bytes: what the heap's objects use, and the heap's size. */
export interface HeapUsage {
  used: number;
  total: number;
}

/** How long an answer may take: under load the isolate answers between the rooms' events. */
const ANSWER_MS = 5000;
/** How often the server is asked for a page while a collection waits for its isolate to run. */
const POKE_MS = 200;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class IsolateHeap {
  /** The reading that found the most used during `sample`'s readings. */
  peak: HeapUsage | undefined;
  /** Why a reading failed, if one did: then the readings are not reported. */
  failure: string | undefined;
  private nextId = 1;
  private readonly answers = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  private reading = false;

  private constructor(
    private readonly socket: WebSocket,
    private readonly host: string,
  ) {
    socket.on("message", (data: Buffer) => {
      const message = JSON.parse(String(data)) as { id?: number; result?: unknown; error?: { message: string } };
      const answer = message.id === undefined ? undefined : this.answers.get(message.id);
      if (answer === undefined) return; // the isolate's events and the answers meant for wrangler
      this.answers.delete(message.id!);
      if (message.error === undefined) answer.resolve(message.result);
      else answer.reject(new Error(message.error.message));
    });
    socket.on("error", () => undefined); // a connection that fails closes, which the answers waiting learn
    socket.on("close", () => {
      for (const { reject } of this.answers.values()) reject(new Error("the inspector closed the connection"));
      this.answers.clear();
    });
  }

  /**
   * Connects to the inspector of the server at `host` (which it asks for a page to wake the isolate, see
   * `usedAfterCollection`); rejects, saying why, if it cannot.
   */
  static async connect(inspectorPort: number, host: string): Promise<IsolateHeap> {
    const response = await fetch(`http://127.0.0.1:${inspectorPort}/json`, { signal: AbortSignal.timeout(ANSWER_MS) });
    const targets = (await response.json()) as { webSocketDebuggerUrl: string }[];
    // wrangler's proxy lists just the Worker it runs, whose isolate is the rooms'.
    if (targets.length !== 1) throw new Error(`the inspector lists ${targets.length} targets, not the Worker's alone`);
    const url = new URL(targets[0]!.webSocketDebuggerUrl);
    if (url.hostname !== "127.0.0.1") throw new Error(`the inspector's target is on ${url.hostname}, not on loopback`);
    const socket = new WebSocket(url, { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
      socket.once("close", (code, reason) => reject(new Error(`the inspector refused the connection: ${code} ${reason}`)));
    });
    return new IsolateHeap(socket, host);
  }

  /** Starts a reading for `peak`, unless one is still waiting for its answer; a reading that fails sets `failure`. */
  sample(): void {
    if (this.reading || this.failure !== undefined) return;
    this.reading = true;
    this.usage().then(
      (usage) => {
        if (usage.used > (this.peak?.used ?? -1)) this.peak = usage;
        this.reading = false;
      },
      (error: Error) => (this.failure = `a reading during the load failed: ${error.message}`),
    );
  }

  async usage(): Promise<HeapUsage> {
    const { usedSize, totalSize } = (await this.send("Runtime.getHeapUsage")) as { usedSize: number; totalSize: number };
    return { used: usedSize, total: totalSize };
  }

  /**
   * What the heap's objects use after a full collection. V8 runs the collection as a task of the isolate, and workerd
   * runs those only when the isolate runs something, so the server is asked for a page (the Worker's 404) until it has.
   */
  async usedAfterCollection(): Promise<number> {
    let answered = false;
    const collected = this.send("HeapProfiler.collectGarbage").finally(() => (answered = true));
    collected.catch(() => undefined); // awaited below, unless a request fails first
    while (!answered) {
      const response = await fetch(`http://${this.host}/`, { signal: AbortSignal.timeout(ANSWER_MS) });
      await response.body?.cancel();
      await sleep(POKE_MS);
    }
    await collected;
    return (await this.usage()).used;
  }

  close(): void {
    this.socket.terminate();
  }

  private send(method: string): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeout = setTimeout(() => {
        this.answers.delete(id);
        reject(new Error(`no answer to ${method} within ${ANSWER_MS / 1000} s`));
      }, ANSWER_MS);
      this.answers.set(id, {
        resolve: (result) => {
          clearTimeout(timeout);
          resolve(result);
        },
        reject: (error) => {
          clearTimeout(timeout);
          reject(error);
        },
      });
      this.socket.send(JSON.stringify({ id, method }));
    });
  }
}

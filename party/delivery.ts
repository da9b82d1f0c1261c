/**
 * How a room's frames reach its present sockets: coalesced when they come fast, and counted, so that a socket that
 * does not read cannot make the room hold its output without end.
 *
 * The Workers runtime tells a server nothing of what a socket has not yet sent (there is no `bufferedAmount`), so
 * the room asks: after every `maxLag / 4` code units sent to a socket it sends that socket a `mark` with a random id,
 * which the client acknowledges (`ack`) once it has read that far. Only a client that reads the stream knows the id,
 * so a client cannot claim to be reading while it is not. A socket more than `maxLag` beyond its last acknowledged
 * mark (its welcome aside) is closed, and its client resumes where it is.
 */
import { encodeBatch, encodeMark } from "../common/protocol.js";

/** Frames a room sends at once within one coalescing window before it batches the rest of the window's events. */
export const IMMEDIATE_PER_WINDOW = 4;

/** One socket's account, in UTF-16 code units since its welcome: what was sent to it and what it acknowledged. */
export interface Receiver<Socket> {
  socket: Socket;
  sent: number;
  acked: number;
  /** The length of its welcome and catch-up, which it may hold unacknowledged on top of `maxLag`. */
  welcomeLength: number;
  /** The marks sent and not yet acknowledged, oldest first, each with how much had been sent with it. */
  marks: { id: string; offset: number }[];
}

/** A new receiver's account, as its welcome starts it. */
export const newAccount = () => ({ sent: 0, acked: 0, welcomeLength: 0, marks: [] });

export interface DeliveryOptions<Socket> {
  /** Longest a frame waits to go out with the ones after it, in milliseconds; 0 sends each at once. */
  coalesce: number;
  /** What a receiver may hold unacknowledged beyond its welcome. */
  maxLag: number;
  clock: () => number;
  /** A fresh, unguessable id for a mark. */
  newToken: () => string;
  /** Runs `callback` in `ms` milliseconds; without it, every frame goes out at once. */
  setTimer?: (ms: number, callback: () => void) => void;
  /** A receiver fell more than `maxLag` behind: the room closes it. */
  behind: (receiver: Receiver<Socket>) => void;
  /** A batch went out on the timer, outside any call into the room. */
  flushed?: () => void;
}

export class Delivery<Socket extends { send(text: string): void }> {
  /**
   * The present receivers, whom every broadcast goes to. An array rather than a pass over a map: in workerd a map's
   * iterator allocates a result object per entry, i.e. per delivery, and that garbage alone made the room collect
   * more often than the baseline room (docs/performance.md, item 10).
   */
  private readonly receivers: Receiver<Socket>[] = [];
  /** Frames waiting for the batch's timer, oldest first. */
  private batch: string[] = [];
  /** The coalescing window: when it began, and how many frames went out at once in it. */
  private windowStart = -Infinity;
  private sentInWindow = 0;

  constructor(private readonly options: DeliveryOptions<Socket>) {}

  get count(): number {
    return this.receivers.length;
  }

  add(receiver: Receiver<Socket>): void {
    this.receivers.push(receiver);
  }

  remove(receiver: Receiver<Socket>): void {
    const index = this.receivers.indexOf(receiver);
    if (index !== -1) this.receivers.splice(index, 1);
  }

  /**
   * Sends `text` to every present socket: at once while at most IMMEDIATE_PER_WINDOW frames went out in the current
   * `coalesce` window, else in one frame with everything else that comes before the window ends. Light traffic
   * never waits (four frames in 5 ms is 800 a second); under load, a socket gets about one frame per window, however
   * many events it holds. Frames keep their order either way.
   */
  broadcast(text: string): void {
    const { coalesce, clock, setTimer } = this.options;
    if (setTimer === undefined || coalesce === 0) return this.sendToAll(text);
    const now = clock();
    if (this.batch.length === 0) {
      if (now - this.windowStart >= coalesce) {
        this.windowStart = now;
        this.sentInWindow = 0;
      }
      if (this.sentInWindow < IMMEDIATE_PER_WINDOW) {
        this.sentInWindow++;
        return this.sendToAll(text);
      }
    }
    this.batch.push(text);
    if (this.batch.length === 1) {
      setTimer(Math.max(0, this.windowStart + coalesce - now), () => {
        this.flush();
        this.options.flushed?.();
      });
    }
  }

  /** Sends what waits for the batch's timer now: before a welcome, which must come after every event it leaves out. */
  flush(): void {
    if (this.batch.length === 0) return;
    const frames = this.batch;
    this.batch = [];
    // The batch is the first frame of a new window, which takes the frames after it as a batch too if they come fast.
    this.windowStart = this.options.clock();
    this.sentInWindow = IMMEDIATE_PER_WINDOW;
    this.sendToAll(frames.length === 1 ? frames[0]! : encodeBatch(frames));
  }

  /** Sends `text` to one receiver, and counts it against what that receiver may hold unacknowledged. */
  send(receiver: Receiver<Socket>, text: string): void {
    if (!this.counted(receiver, text)) this.options.behind(receiver);
  }

  /** The receiver read up to the mark `id`. A mark it does not have (one from before the room slept) counts for nothing. */
  acknowledge(receiver: Receiver<Socket>, id: string): void {
    const index = receiver.marks.findIndex((mark) => mark.id === id);
    if (index === -1) return;
    receiver.acked = receiver.marks[index]!.offset;
    receiver.marks.splice(0, index + 1);
  }

  private sendToAll(text: string): void {
    const receivers = this.receivers;
    let behind: Receiver<Socket>[] | undefined;
    for (let index = 0; index < receivers.length; index++) {
      const receiver = receivers[index]!;
      if (!this.counted(receiver, text)) {
        behind ??= [];
        behind.push(receiver);
      }
    }
    // Closed after the loop: closing one changes the list.
    if (behind !== undefined) for (const receiver of behind) this.options.behind(receiver);
  }

  /** Sends and counts `text`, with a mark when one is due; false when the receiver is now too far behind. */
  private counted(receiver: Receiver<Socket>, text: string): boolean {
    trySend(receiver.socket, text);
    receiver.sent += text.length;
    const { maxLag } = this.options;
    const lastMark = receiver.marks.at(-1)?.offset ?? receiver.acked;
    if (receiver.sent - Math.max(lastMark, receiver.welcomeLength) >= maxLag / 4) {
      const id = this.options.newToken();
      const mark = encodeMark(id);
      trySend(receiver.socket, mark);
      receiver.sent += mark.length;
      receiver.marks.push({ id, offset: receiver.sent });
    }
    return receiver.sent - Math.max(receiver.acked, receiver.welcomeLength) <= maxLag;
  }
}

export function trySend(socket: { send(text: string): void }, text: string): void {
  try {
    socket.send(text);
  } catch {
    // The socket is closing; its close handler removes it.
  }
}

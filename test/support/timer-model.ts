/**
 * TEST ONLY: a chat model with work due later in replicated time. Each user-enter schedules a ring `delay` ms later
 * (its `modelOptions`), which only a tick or a later event can bring, so a quiet room shows whether replicas ask for
 * ticks and get them.
 */
import { ChatModel, type ChatModelOptions } from "../../component/chat-model.js";

export interface TimerModelOptions extends ChatModelOptions {
  delay: number;
}

export class TimerChatModel extends ChatModel {
  /** Replicated times at which a ring ran. */
  rings: number[] = [];
  delay = 0;

  override init(options?: TimerModelOptions): void {
    super.init(options);
    this.delay = options?.delay ?? 0;
  }

  override userEnter(client: string): void {
    super.userEnter(client);
    this.future(this.delay).ring();
  }

  ring(): void {
    this.rings.push(this.now());
  }
}
TimerChatModel.register("TimerChatModel");

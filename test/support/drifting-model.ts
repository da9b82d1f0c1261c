/**
 * TEST ONLY: a deliberately non-deterministic chat model, to see how the reflector and the session handle replicas
 * that disagree. How much it counts per post comes from its `modelOptions` and is kept outside the replicated
 * state (in a module-level WeakMap), as a model reading a global would: a replica created with `{ drift: 1 }`
 * counts every post twice, so its state (and state hash) parts from the others' at the first post, while a replica
 * restored from a snapshot counts honestly.
 *
 * It lives outside `component/` on purpose: the determinism checker (test/support/determinism.ts) checks only
 * the product's model code.
 */
import { ChatModel, type ChatModelOptions } from "../../component/chat-model.js";

export interface DriftingModelOptions extends ChatModelOptions {
  /** Added to the post count on every post; anything but 0 makes this replica drift. */
  drift?: number;
}

/** Not model state: it does not travel in snapshots and is not part of the state hash. */
const driftOf = new WeakMap<DriftingChatModel, number>();

export class DriftingChatModel extends ChatModel {
  /** Posts seen, plus `drift` for each of them on a drifting replica. */
  postCount = 0;

  override init(options?: DriftingModelOptions): void {
    super.init(options);
    driftOf.set(this, options?.drift ?? 0);
  }

  override post(data: { text?: unknown } | null, sender?: string): void {
    super.post(data, sender);
    this.postCount += 1 + (driftOf.get(this) ?? 0);
  }
}
DriftingChatModel.register("DriftingChatModel");

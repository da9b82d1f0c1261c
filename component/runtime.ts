/**
 * The replicated runtime. A `Replica` holds one session's models and runs them on the reflector's events, in
 * sequence order, with replicated time and a replicated random generator. Every client's replica computes the
 * same state from the same events.
 *
 * Model code runs only inside `Replica` methods, so it can reach the replica it belongs to through `executing`.
 */
import type { ReflectedEvent } from "../common/protocol.js";
import { Xoshiro128StarStar } from "./prng.js";

/** Values model state may hold: JSON, plus references to other models. */
export type StateValue = null | boolean | number | string | Model | StateValue[] | { [key: string]: StateValue };

export type ModelClass<M extends Model = Model> = new () => M;
/** `model.future(ms)`: call any method of the model on it to schedule that call. */
type FutureCalls = Record<string, (...args: StateValue[]) => void>;

/** A model-to-view notification, delivered to the view after the current batch of events. */
export interface ViewEvent {
  scope: string;
  event: string;
  data: unknown;
}

interface Subscription {
  model: string;
  method: string;
}

interface Future {
  time: number;
  /** Tie-breaker: futures due at the same time run in the order they were scheduled. */
  order: number;
  model: string;
  method: string;
  args: StateValue[];
}

const registry = new Map<string, ModelClass>();
const registeredNames = new WeakMap<ModelClass, string>();

let executing: Replica | undefined;

function currentReplica(action: string): Replica {
  if (executing === undefined) throw new Error(`${action} is model code: it may run only while a replica processes an event`);
  return executing;
}

const TOPIC_SEPARATOR = "\u0000";
/** The key of a (scope, event) pair in subscription tables, for models and views alike. */
export const topicKey = (scope: string, event: string) => `${scope}${TOPIC_SEPARATOR}${event}`;

/**
 * Base class of replicated models. Subclasses keep their state in own fields holding `StateValue`s, do their
 * setup in `init`, and must be registered with `register(name)` so a snapshot can name their class.
 */
export class Model {
  /** Unique within the replica; assigned by the replica in creation order, so it is the same everywhere. */
  id!: string;

  /** Makes the class known by a name that survives minification; snapshots refer to the class by it. */
  static register(this: ModelClass, name: string): void {
    const existing = registry.get(name);
    if (existing !== undefined && existing !== this) throw new Error(`another model class is already registered as ${name}`);
    registry.set(name, this);
    registeredNames.set(this, name);
  }

  /** Creates a model inside the running replica. Never call `new` on a model class. */
  static create<M extends Model>(this: ModelClass<M>, options?: unknown): M {
    const replica = currentReplica("Model.create");
    if (!registeredNames.has(this)) throw new Error(`register the model class first: ${this.name}.register("${this.name}")`);
    const model = new this();
    replica.adopt(model);
    model.init(options);
    return model;
  }

  /** Called once, when the model is created (never again when it is restored from a snapshot). */
  init(_options?: unknown): void {}

  /** Removes the model with its subscriptions and pending futures. */
  destroy(): void {
    currentReplica("destroy").release(this);
  }

  /** The id of the session (room) this replica belongs to. */
  get sessionId(): string {
    return currentReplica("sessionId").sessionId;
  }

  /**
   * Calls `this[method](data, sender)` whenever `event` is published in `scope`. `sender` is the client id the
   * reflector stamped on the event, or undefined when a model published it.
   */
  subscribe(scope: string, event: string, method: string): void {
    if (typeof (this as unknown as Record<string, unknown>)[method] !== "function") throw new Error(`subscribe: ${method} is not a method of this model`);
    currentReplica("subscribe").subscribe(scope, event, this.id, method);
  }

  unsubscribe(scope: string, event: string, method?: string): void {
    currentReplica("unsubscribe").unsubscribe(scope, event, this.id, method);
  }

  /** Delivers to subscribed models at once, and to the view after the current batch of events. */
  publish(scope: string, event: string, data: StateValue = null): void {
    currentReplica("publish").publish(scope, event, data);
  }

  /** `this.future(500).method(args)` calls `method` 500 ms later in replicated time. */
  future(ms = 0): FutureCalls {
    const replica = currentReplica("future");
    return new Proxy({} as FutureCalls, {
      get:
        (_target, method) =>
        (...args: StateValue[]) =>
          replica.schedule(this.id, ms, String(method), args),
    });
  }

  /** A float in [0, 1) from the replicated generator: the same sequence on every replica. */
  random(): number {
    return currentReplica("random").random();
  }

  /** The reflector's time of the event (or future) being processed, in milliseconds since the epoch. */
  now(): number {
    return currentReplica("now").time;
  }
}

/** The replicated state of one session, and the machine that advances it. */
export class Replica {
  /** Sequence number of the last reflected event applied. */
  seq = 0;
  /** Replicated time. */
  time = 0;
  root!: Model;

  #prng: Xoshiro128StarStar;
  readonly #models = new Map<string, Model>();
  #nextModel = 1;
  /** In subscription order, which is replicated, so handlers run in the same order everywhere. */
  readonly #subscriptions = new Map<string, Subscription[]>();
  /** Kept sorted by (time, order). */
  #futures: Future[] = [];
  #nextFuture = 1;
  #viewEvents: ViewEvent[] = [];

  private constructor(
    readonly sessionId: string,
    prngState: number[],
  ) {
    this.#prng = new Xoshiro128StarStar(prngState);
  }

  /**
   * A new session's replica, its generator seeded with `seed` (four 32-bit words, which the room's key gives every
   * member alike), with the root model created at time 0.
   */
  static create(sessionId: string, seed: readonly number[], Root: ModelClass, options?: unknown): Replica {
    const replica = new Replica(sessionId, [...seed]);
    replica.#execute(() => {
      replica.root = Model.create.call(Root, options);
    });
    return replica;
  }

  /** Applies the next reflected event. Already-applied events are ignored; a gap in the order is an error. */
  apply(event: ReflectedEvent): void {
    if (event.seq <= this.seq) return;
    if (event.seq !== this.seq + 1) throw new Error(`event ${event.seq} arrived after event ${this.seq}: events are missing`);
    this.#execute(() => {
      this.#runFuturesUntil(event.time);
      this.time = Math.max(this.time, event.time);
      this.seq = event.seq;
      if (event.type === "message") {
        // The session's own scope belongs to the reflector's events: no payload can publish a user-enter or user-exit.
        const message = decodeModelEvent(event.payload);
        if (message !== undefined && message.scope !== this.sessionId) this.#deliver(message.scope, message.event, message.data, event.client);
      } else {
        // A user-enter's handlers get the client and, when its hello carried one, its profile (opened, as data).
        const profile = event.type === "user-enter" && event.profile !== undefined ? decodeModelData(event.profile) : undefined;
        this.#deliver(this.sessionId, event.type, event.client, profile);
      }
      this.#runFuturesUntil(this.time);
    });
  }

  /** Advances replicated time without an event (a tick), running the futures that fall due. */
  advanceTo(time: number): void {
    if (time <= this.time) return;
    this.#execute(() => {
      this.#runFuturesUntil(time);
      this.time = time;
    });
  }

  /** Model-to-view notifications produced since the last call. */
  takeViewEvents(): ViewEvent[] {
    const events = this.#viewEvents;
    this.#viewEvents = [];
    return events;
  }

  get pendingFutures(): number {
    return this.#futures.length;
  }

  /**
   * When the earliest pending future falls due, in replicated time; undefined when none is pending. Every replica
   * computes the same, so any of them can ask the reflector for a tick then.
   */
  get nextFutureTime(): number | undefined {
    return this.#futures[0]?.time;
  }

  /** The whole state in a canonical form: the same state gives the same text on every replica. */
  serialize(): string {
    const saved = {
      format: 1,
      sessionId: this.sessionId,
      seq: this.seq,
      time: this.time,
      random: this.#prng.state,
      nextModel: this.#nextModel,
      nextFuture: this.#nextFuture,
      root: this.root.id,
      models: Object.fromEntries(
        [...this.#models].map(([id, model]) => [id, { class: registeredNames.get(model.constructor as ModelClass)!, state: ownState(model) }]),
      ),
      subscriptions: [...this.#subscriptions].flatMap(([key, list]) => list.map(({ model, method }) => [...key.split(TOPIC_SEPARATOR), model, method])),
      futures: this.#futures.map(({ time, order, model, method, args }) => [time, order, model, method, args]),
    };
    return JSON.stringify(toCanonical(saved as unknown as StateValue, "state"));
  }

  /** Rebuilds a replica from `serialize()` output. */
  static restore(text: string): Replica {
    const saved = JSON.parse(text);
    if (saved.format !== 1) throw new Error(`unknown state format ${saved.format}`);
    const replica = new Replica(saved.sessionId, saved.random);
    replica.seq = saved.seq;
    replica.time = saved.time;
    replica.#nextModel = saved.nextModel;
    replica.#nextFuture = saved.nextFuture;
    const stored = Object.entries(saved.models as Record<string, { class: string; state: Record<string, unknown> }>);
    for (const [id, { class: name }] of stored) {
      const Class = registry.get(name);
      if (Class === undefined) throw new Error(`state names model class ${name}, which is not registered`);
      replica.#models.set(id, Object.create(Class.prototype) as Model);
    }
    const resolve = (value: unknown) => fromCanonical(value, replica.#models);
    for (const [id, { state }] of stored) Object.assign(replica.#models.get(id)!, resolve(state));
    replica.root = replica.#models.get(saved.root)!;
    for (const [scope, event, model, method] of saved.subscriptions) replica.subscribe(scope, event, model, method);
    replica.#futures = saved.futures.map(([time, order, model, method, args]: [number, number, string, string, unknown[]]) => ({
      time,
      order,
      model,
      method,
      args: resolve(args),
    }));
    return replica;
  }

  // The methods below are called by Model on behalf of model code.

  adopt(model: Model): void {
    model.id = `M${this.#nextModel++}`;
    this.#models.set(model.id, model);
  }

  release(model: Model): void {
    this.#models.delete(model.id);
    for (const [key, list] of this.#subscriptions) {
      const kept = list.filter((subscription) => subscription.model !== model.id);
      if (kept.length > 0) this.#subscriptions.set(key, kept);
      else this.#subscriptions.delete(key);
    }
    this.#futures = this.#futures.filter((future) => future.model !== model.id);
  }

  subscribe(scope: string, event: string, model: string, method: string): void {
    const key = topicKey(scope, event);
    const list = this.#subscriptions.get(key) ?? [];
    if (!list.some((subscription) => subscription.model === model && subscription.method === method)) list.push({ model, method });
    this.#subscriptions.set(key, list);
  }

  unsubscribe(scope: string, event: string, model: string, method?: string): void {
    const key = topicKey(scope, event);
    const kept = (this.#subscriptions.get(key) ?? []).filter((s) => s.model !== model || (method !== undefined && s.method !== method));
    if (kept.length > 0) this.#subscriptions.set(key, kept);
    else this.#subscriptions.delete(key);
  }

  publish(scope: string, event: string, data: StateValue): void {
    this.#deliver(scope, event, data, undefined);
    this.#viewEvents.push({ scope, event, data });
  }

  schedule(model: string, ms: number, method: string, args: StateValue[]): void {
    if (!(ms >= 0)) throw new Error(`future(${ms}): the delay must be zero or more milliseconds`);
    const future = { time: this.time + ms, order: this.#nextFuture++, model, method, args };
    // Insert after every future due at the same time or earlier: (time, order) stays sorted.
    let index = this.#futures.length;
    while (index > 0 && this.#futures[index - 1]!.time > future.time) index--;
    this.#futures.splice(index, 0, future);
  }

  random(): number {
    return this.#prng.next();
  }

  #execute(body: () => void): void {
    if (executing !== undefined) throw new Error("a replica is already processing an event");
    executing = this;
    try {
      body();
    } finally {
      executing = undefined;
    }
  }

  #runFuturesUntil(time: number): void {
    while (this.#futures.length > 0 && this.#futures[0]!.time <= time) {
      const future = this.#futures.shift()!;
      this.time = Math.max(this.time, future.time);
      this.#invoke(future.model, future.method, future.args);
    }
  }

  /** Calls each subscriber with `data` and `second`: a message's sender, or a user-enter's profile. */
  #deliver(scope: string, event: string, data: unknown, second: unknown): void {
    const list = this.#subscriptions.get(topicKey(scope, event));
    if (list === undefined) return;
    // A handler may subscribe or unsubscribe; iterate over the list as it was.
    for (const { model, method } of [...list]) this.#invoke(model, method, [data, second]);
  }

  /**
   * Runs one handler. An exception is logged and the batch goes on: every replica throws at the same point, so
   * skipping the rest of that handler keeps them identical.
   */
  #invoke(modelId: string, method: string, args: unknown[]): void {
    const model = this.#models.get(modelId) as unknown as Record<string, unknown> | undefined;
    if (model === undefined) return;
    const handler = model[method];
    if (typeof handler !== "function") {
      console.error(`model ${modelId} has no method ${method}`);
      return;
    }
    try {
      handler.apply(model, args);
    } catch (error) {
      console.error(`model ${modelId}.${method} threw`, error);
    }
  }
}

/** A view's event as carried, opaque to the reflector, in a message payload. */
export function encodeModelEvent(scope: string, event: string, data: unknown): string {
  return JSON.stringify({ scope, event, data: data ?? null });
}

/** Deepest nesting of arrays and objects that event data may have. */
export const MAX_DATA_DEPTH = 32;
/** Keys event data may not use: `$model` marks a model reference in serialized state, `__proto__` an object's prototype. */
const RESERVED_KEYS = new Set(["$model", "__proto__"]);

/**
 * The model event in a payload, or undefined when the payload is not one: not JSON, not `{scope, event, data}`, or
 * data that model state could not hold (a reserved key, a number JSON cannot write, nesting beyond MAX_DATA_DEPTH).
 * Every replica skips such a payload alike, so nothing a member sends can keep honest replicas from serializing
 * their state.
 */
export function decodeModelEvent(payload: string): ViewEvent | undefined {
  const value = parseJson(payload);
  if (typeof value !== "object" || value === null) return undefined;
  const { scope, event, data } = value as Record<string, unknown>;
  if (typeof scope !== "string" || typeof event !== "string" || (data !== undefined && !isReplicable(data, 0))) return undefined;
  return { scope, event, data: data ?? null };
}

/** JSON text as data a model may hold; undefined when it is not JSON or not replicable (see `isReplicable`). */
export function decodeModelData(text: string): unknown {
  const value = parseJson(text);
  return value !== undefined && isReplicable(value, 0) ? value : undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isReplicable(value: unknown, depth: number): boolean {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (typeof value !== "object" || depth >= MAX_DATA_DEPTH) return false;
  if (Array.isArray(value)) return value.every((item) => isReplicable(item, depth + 1));
  return Object.keys(value).every((key) => !RESERVED_KEYS.has(key) && isReplicable((value as Record<string, unknown>)[key], depth + 1));
}

function ownState(model: Model): StateValue {
  const state: Record<string, StateValue> = {};
  for (const key of Object.keys(model)) state[key] = (model as unknown as Record<string, StateValue>)[key]!;
  return state;
}

/** Sorted keys and model references as `{"$model": id}`; anything that is not `StateValue` is an error. */
function toCanonical(value: StateValue | undefined, path: string): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`${path} is ${value}, which model state cannot hold`);
    return value;
  }
  if (value instanceof Model) return { $model: value.id };
  if (Array.isArray(value)) return value.map((item, index) => toCanonical(item, `${path}[${index}]`));
  if (typeof value === "object" && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    const result: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      if (key === "$model") throw new TypeError(`${path} uses the reserved key $model`);
      if (value[key] !== undefined) result[key] = toCanonical(value[key], `${path}.${key}`);
    }
    return result;
  }
  const kind = typeof value === "object" ? ((value as object).constructor?.name ?? "object") : typeof value;
  throw new TypeError(`${path} holds a ${kind}; model state may hold only JSON values and models`);
}

function fromCanonical(value: unknown, models: Map<string, Model>): StateValue {
  if (Array.isArray(value)) return value.map((item) => fromCanonical(item, models));
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>;
    if (typeof record.$model === "string") return models.get(record.$model)!;
    const result: Record<string, StateValue> = {};
    for (const key of Object.keys(record)) result[key] = fromCanonical(record[key], models);
    return result;
  }
  return value as StateValue;
}

// Coalesces concurrent calls into one query each: the same group-commit shape as the audit writer.
//
// A call is sent at once while fewer than `maxInFlight` batches are out; otherwise it waits and joins the next
// batch. An idle vault therefore adds no latency, and a busy one makes one round trip (and one statement for
// PostgreSQL to parse, plan and run) for many requests instead of one each.

export interface BatcherLimits {
  /** Most calls in one statement. */
  maxBatch: number;
  /** Batches out at once (each holds a pool connection). */
  maxInFlight: number;
  /**
   * How long a call may wait to join a batch, and what it is then rejected with. Without one, a call queued behind
   * batches that get no answer waits a full statement deadline for every `maxBatch × maxInFlight` calls ahead of it.
   */
  queueDeadline?: { ms: number; error: () => unknown };
}

/** In a batch's results: this item failed on its own (the others stand). */
export class ItemFailure {
  constructor(readonly error: unknown) {}
}

interface Waiting<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
  /** performance.now() when submitted. */
  since: number;
}

/**
 * `run` answers a batch with one result per item, in order (an ItemFailure rejects that item's caller alone).
 * `keys` (optional) names what two items must not share while either is out: an item with a key in the batch
 * being formed, or in a batch still out, waits for a later one. Two items that would meet each other's
 * uncommitted rows are then never out at once, so one never waits on the other's locks, let alone in a cycle.
 */
export class Batcher<I, O> {
  #queue: Waiting<I, O>[] = [];
  #inFlight = 0;
  /** The keys of the batches out: no two of them share one, so each is held by one item. */
  readonly #out = new Set<string>();
  /** Armed while calls wait and a queue deadline is set: fires at the oldest one's deadline. */
  #deadlineTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly run: (items: I[]) => Promise<(O | ItemFailure)[]>,
    private readonly limits: BatcherLimits,
    private readonly keys?: (item: I) => readonly string[],
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject, since: performance.now() });
      this.pump();
      this.armDeadline();
    });
  }

  /**
   * One timer for the whole queue, set for its oldest call: the queue stays in submission order (take keeps the
   * order of what it leaves), so the calls past their deadline are always at its head.
   */
  private armDeadline(): void {
    const deadline = this.limits.queueDeadline;
    if (!deadline || this.#deadlineTimer || this.#queue.length === 0) return;
    const wait = this.#queue[0]!.since + deadline.ms - performance.now();
    this.#deadlineTimer = setTimeout(() => {
      this.#deadlineTimer = undefined;
      const now = performance.now();
      while (this.#queue.length > 0 && now - this.#queue[0]!.since >= deadline.ms) this.#queue.shift()!.reject(deadline.error());
      this.armDeadline();
    }, Math.max(0, Math.ceil(wait)));
    this.#deadlineTimer.unref();
  }

  private pump(): void {
    while (this.#inFlight < this.limits.maxInFlight && this.#queue.length > 0) {
      const { batch, keys } = this.take();
      // Everything queued waits on a key that is out: the batch holding it pumps again when it is answered.
      if (batch.length === 0) return;
      for (const k of keys) this.#out.add(k);
      this.#inFlight += 1;
      this.run(batch.map((w) => w.item)).then(
        (results) => {
          batch.forEach((w, i) => {
            const result = results[i]!;
            if (result instanceof ItemFailure) w.reject(result.error);
            else w.resolve(result);
          });
        },
        (err: unknown) => {
          for (const w of batch) w.reject(err);
        },
      ).finally(() => {
        for (const k of keys) this.#out.delete(k);
        this.#inFlight -= 1;
        this.pump();
      });
    }
  }

  /** The next batch, and the keys its items hold. */
  private take(): { batch: Waiting<I, O>[]; keys: Set<string> } {
    const seen = new Set<string>();
    if (!this.keys) return { batch: this.#queue.splice(0, this.limits.maxBatch), keys: seen };
    const batch: Waiting<I, O>[] = [];
    const rest: Waiting<I, O>[] = [];
    for (const w of this.#queue) {
      const keys = this.keys(w.item);
      if (batch.length < this.limits.maxBatch && !keys.some((k) => seen.has(k) || this.#out.has(k))) {
        for (const k of keys) seen.add(k);
        batch.push(w);
      } else {
        rest.push(w);
      }
    }
    this.#queue = rest;
    return { batch, keys: seen };
  }
}

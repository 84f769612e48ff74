/**
 * One round trip shared by many callers. `fresh()` promises a result read after the call began
 * (what a writer needs: a WAL position observed after its write finished); `shared()` accepts any
 * probe already under way (what a waiting reader needs: a recent value, soon).
 */
export class CoalescedProbe<T> {
  readonly #run: () => Promise<T>;
  #inFlight: Promise<T> | undefined;
  #next: Promise<T> | undefined;
  #started = 0;

  constructor(run: () => Promise<T>) {
    this.#run = run;
  }

  /** Probes started so far. */
  get started(): number {
    return this.#started;
  }

  fresh(): Promise<T> {
    if (!this.#inFlight) return this.#start();
    // The probe under way may have read its value before the caller's write finished: queue one
    // more behind it, shared by everyone who arrives until it starts.
    this.#next ??= this.#inFlight
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        this.#next = undefined;
        return this.#start();
      });
    return this.#next;
  }

  shared(): Promise<T> {
    return this.#inFlight ?? this.#start();
  }

  #start(): Promise<T> {
    this.#started++;
    const probe = this.#run();
    this.#inFlight = probe;
    const clear = (): void => {
      if (this.#inFlight === probe) this.#inFlight = undefined;
    };
    probe.then(clear, clear);
    return probe;
  }
}

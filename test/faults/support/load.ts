// N clients each running one step after another until stopped: the load a fault happens under.
import { Agent } from 'node:http';

export interface Load {
  /** Keep-alive connections shared by the clients, one per client. */
  readonly agent: Agent;
  /** Steps finished so far, by every client. */
  readonly steps: number;
  /** Steps that threw: a step is meant to record its own outcome, so these are test bugs. */
  readonly crashes: unknown[];
  /** No client starts another step after this; steps already under way run on. */
  halt(): void;
  /** halt(), then wait for the steps under way to finish. */
  stop(): Promise<void>;
}

const running = new Set<Load>();

/** For afterEach: a test that failed half-way must not leave its clients looping into the next test. */
export async function stopLoads(): Promise<void> {
  await Promise.all([...running].map((load) => load.stop()));
}

export function startLoad(clients: number, step: (agent: Agent, client: number) => Promise<void>): Load {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const crashes: unknown[] = [];
  let halted = false;
  let steps = 0;
  const loops = Array.from({ length: clients }, async (_, client) => {
    while (!halted) {
      try {
        await step(agent, client);
      } catch (err) {
        crashes.push(err);
      }
      steps += 1;
    }
  });
  const done = Promise.all(loops);
  const load: Load = {
    agent,
    get steps() {
      return steps;
    },
    crashes,
    halt() {
      halted = true;
    },
    async stop() {
      halted = true;
      await done;
      agent.destroy();
      running.delete(load);
    },
  };
  running.add(load);
  return load;
}

/** Counts by key (a status, a status and code), printed as `201×812 503/database_unavailable×40`. */
export class Tally {
  readonly counts = new Map<string, number>();

  add(key: string | number): void {
    const k = String(key);
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }

  get(key: string | number): number {
    return this.counts.get(String(key)) ?? 0;
  }

  keys(): string[] {
    return [...this.counts.keys()].sort();
  }

  toString(): string {
    return this.keys()
      .map((k) => `${k}×${this.get(k)}`)
      .join(' ');
  }
}

/** Runs `work` over `items`, `width` at a time. */
export async function inBatches<T, R>(items: readonly T[], width: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += width) results.push(...(await Promise.all(items.slice(i, i + width).map(work))));
  return results;
}

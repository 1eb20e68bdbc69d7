// A wrapper for values that must never be printed: logs, JSON and inspect all see a mask.
import { inspect } from 'node:util';

export class Secret<T> {
  readonly #value: T;
  readonly #label: string;

  constructor(value: T, label = 'secret') {
    this.#value = value;
    this.#label = label;
  }

  /** The only way to the value; grep for it in review. */
  reveal(): T {
    return this.#value;
  }

  toString(): string {
    return `[${this.#label}]`;
  }

  toJSON(): string {
    return this.toString();
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

// Returns what a synchronous call throws (or undefined), so a test can assert on the error itself.
export function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

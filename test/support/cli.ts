// The cardvault command run in-process, as an operator would run it: its exit code, stdout lines and stderr.
import { run } from '../../src/cli';

export interface CliResult {
  code: number;
  out: string[];
  err: string;
}

export async function runCli(argv: string[], env: Record<string, string>): Promise<CliResult> {
  const out: string[] = [];
  let err = '';
  const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += chunk.toString();
    return true;
  });
  try {
    return { code: await run(argv, env, (line) => out.push(line)), out, err };
  } finally {
    write.mockRestore();
  }
}

/**
 * For `expect(outcome(result)).toEqual({ code: 0 })`: the exit code, with stderr beside it only when the code is
 * not the one expected, so a failing assertion shows why the command failed.
 */
export function outcome(result: CliResult, expected = 0): { code: number; err?: string } {
  return result.code === expected ? { code: result.code } : { code: result.code, err: result.err };
}

// `cardvault audit verify <export> --jwks <file or url>`: the auditor's offline check, exit 0 only if all holds.
import fs from 'node:fs';
import readline from 'node:readline';
import { verifyExport, type VerifyReport } from './verify';

async function loadJwks(source: string): Promise<{ keys: unknown[] }> {
  const text = /^https?:\/\//.test(source) ? await (await fetch(source)).text() : fs.readFileSync(source, 'utf8');
  const jwks = JSON.parse(text) as { keys?: unknown };
  if (!Array.isArray(jwks.keys)) throw new Error(`${source} is not a JWKS (no "keys" array)`);
  return { keys: jwks.keys };
}

export async function verifyCommand(file: string, jwksSource: string, out: (line: string) => void): Promise<number> {
  const jwks = await loadJwks(jwksSource);
  const lines = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  const report: VerifyReport = await verifyExport(lines, jwks);
  out(
    JSON.stringify({
      ok: report.ok,
      tree_size: report.treeSize,
      events: report.events,
      leaf_hashes: report.leaves,
      checkpoints: report.checkpoints,
      first_bad_seq: report.firstBadSeq,
      problems: report.problems,
    }),
  );
  return report.ok ? 0 : 1;
}

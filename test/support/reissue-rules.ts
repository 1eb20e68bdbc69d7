// A simulator rules file under which one card is reissued with a new number (outcome new_account).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface RulesFile {
  /** Pass as the harness's updater.simulatorRules. */
  file: string;
  remove(): void;
}

export function reissueRules(oldPan: string): RulesFile {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-rules-'));
  const file = path.join(dir, 'rules.yaml');
  fs.writeFileSync(
    file,
    `default: { outcome: no_change }\nrules:\n  - { name: reissued, match: { panPrefix: "${oldPan.slice(0, 11)}", last4: "${oldPan.slice(-4)}" }, outcome: new_account }\n`,
  );
  return { file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

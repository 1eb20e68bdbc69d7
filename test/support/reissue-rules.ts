// Simulator rules files under which one card is reissued with a new number (new_account), or closed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface RulesFile {
  /** Pass as the harness's updater.simulatorRules. */
  file: string;
  remove(): void;
}

export function reissueRules(oldPan: string): RulesFile {
  return rulesFor(oldPan, 'new_account');
}

export function closingRules(pan: string): RulesFile {
  return rulesFor(pan, 'closed');
}

function rulesFor(pan: string, outcome: 'new_account' | 'closed'): RulesFile {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-rules-'));
  const file = path.join(dir, 'rules.yaml');
  fs.writeFileSync(
    file,
    `default: { outcome: no_change }\nrules:\n  - { name: one card, match: { panPrefix: "${pan.slice(0, 11)}", last4: "${pan.slice(-4)}" }, outcome: ${outcome} }\n`,
  );
  return { file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

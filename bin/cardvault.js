#!/usr/bin/env node
// Entry point of `npx cardvault`: runs the compiled CLI (npm install builds it via the prepare script).
const path = require('node:path');
const fs = require('node:fs');

const cli = path.join(__dirname, '..', 'dist', 'cli.js');
if (!fs.existsSync(cli)) {
  process.stderr.write('cardvault: not built yet; run `npm run build` first\n');
  process.exit(1);
}
require(cli)
  .run(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });

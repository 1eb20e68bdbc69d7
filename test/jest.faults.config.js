// The fault suite: the compiled vault (dist/main.js) as a child process, killed, starved of PostgreSQL, Redis or
// KMS, and fed hostile input. Runs after the main suites and before the canary, which searches its logs too.
module.exports = {
  rootDir: '..',
  testEnvironment: 'node',
  // Transpile only (isolatedModules in tsconfig.json): `npm run typecheck` checks types once for the whole tree.
  transform: { '^.+\\.ts$': 'ts-jest' },
  testMatch: ['<rootDir>/test/faults/**/*.test.ts'],
  // One suite at a time: each spawns real processes (vaults, PostgreSQL, Redis, moto) and loads them.
  maxWorkers: 1,
  testTimeout: 120000,
};

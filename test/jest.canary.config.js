// Runs once the main suites are done: searches their logs and a pg_dump for every PAN they vaulted.
module.exports = {
  rootDir: '..',
  testEnvironment: 'node',
  // Transpile only (isolatedModules in tsconfig.json): `npm run typecheck` checks types once for the whole tree.
  transform: { '^.+\\.ts$': 'ts-jest' },
  testMatch: ['<rootDir>/test/canary/**/*.test.ts'],
  testTimeout: 60000,
};

// Runs once the main suites are done: searches their logs and a pg_dump for every PAN they vaulted.
module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  testMatch: ['<rootDir>/test/canary/**/*.test.ts'],
  testTimeout: 60000,
};

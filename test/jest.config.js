// Unit and integration suites. The canary (jest.canary.config.js) runs after them, on what they left behind.
module.exports = {
  rootDir: '..',
  testEnvironment: 'node',
  // Transpile only (isolatedModules in tsconfig.json): `npm run typecheck` checks types once for the whole tree.
  transform: { '^.+\\.ts$': 'ts-jest' },
  testMatch: ['<rootDir>/test/unit/**/*.test.ts', '<rootDir>/test/integration/**/*.test.ts', '<rootDir>/test/browser/**/*.test.ts', '<rootDir>/test/helm/**/*.test.ts'],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  testTimeout: 30000,
  maxWorkers: 2,
};

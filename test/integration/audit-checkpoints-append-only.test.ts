// Signed checkpoints cannot be rewritten or removed, even by the database owner (migrations/0014): a log whose
// events were edited could otherwise be made to verify again by deleting the checkpoints above the edit.
import { freshDatabase, type FreshDatabase } from '../support/fresh-database';

let fresh: FreshDatabase;

beforeAll(async () => {
  fresh = await freshDatabase('cardvault_checkpoints');
  await fresh.db.query(
    `INSERT INTO audit_checkpoints (tree_size, root_hash, frontier, jws) VALUES (1, $1, '{"size": 1, "hashes": []}', 'jws')`,
    [Buffer.alloc(32, 7)],
  );
});
afterAll(() => fresh.drop());

describe('audit_checkpoints', () => {
  it('refuses UPDATE, DELETE and TRUNCATE as the owner, and keeps the row as it was', async () => {
    await expect(fresh.db.query("UPDATE audit_checkpoints SET jws = 'forged' WHERE tree_size = 1")).rejects.toThrow(/audit_checkpoints is append-only \(UPDATE refused\)/);
    await expect(fresh.db.query('DELETE FROM audit_checkpoints WHERE tree_size = 1')).rejects.toThrow(/append-only \(DELETE refused\)/);
    await expect(fresh.db.query('TRUNCATE audit_checkpoints')).rejects.toThrow(/append-only \(TRUNCATE refused\)/);
    expect(await fresh.db.query('SELECT tree_size, jws FROM audit_checkpoints')).toEqual([{ tree_size: '1', jws: 'jws' }]);
  });

  it('still takes new checkpoints, and ignores a second one of the same size as the vault writes it', async () => {
    await fresh.db.query(
      `INSERT INTO audit_checkpoints (tree_size, root_hash, frontier, jws) VALUES (1, $1, '{}', 'other'), (2, $1, '{}', 'jws2')
       ON CONFLICT (tree_size) DO NOTHING`,
      [Buffer.alloc(32, 8)],
    );
    expect(await fresh.db.query('SELECT tree_size, jws FROM audit_checkpoints ORDER BY tree_size')).toEqual([
      { tree_size: '1', jws: 'jws' },
      { tree_size: '2', jws: 'jws2' },
    ]);
  });
});

// A short-lived superuser connection to the maintenance database, for tests that create and drop databases.
import { Client } from 'pg';
import { ADMIN_DATABASE_URL } from './env';

export async function withAdmin<T>(work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export async function adminQuery(sql: string): Promise<void> {
  await withAdmin((client) => client.query(sql));
}

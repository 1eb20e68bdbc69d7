// Small request builders shared by the HTTP tests.
export const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });

/** A JSON POST with a bearer key to a vault running as a process (fetch, not supertest), and its JSON answer. */
export async function postJson(baseUrl: string, urlPath: string, key: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${baseUrl}${urlPath}`, {
    method: 'POST',
    headers: { ...bearer(key), 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

export function cardBody(number: string, extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}) {
  return { card: { number, exp_month: 12, exp_year: 2031, ...extra }, ...top };
}

export async function countCards(db: { query<R>(sql: string, params?: unknown[]): Promise<R[]> }, tenantId: string): Promise<number> {
  const rows = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM cards WHERE tenant_id = $1', [tenantId]);
  return rows[0]!.n;
}

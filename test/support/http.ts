// Small request builders shared by the HTTP tests.
export const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });

export function cardBody(number: string, extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}) {
  return { card: { number, exp_month: 12, exp_year: 2031, ...extra }, ...top };
}

export async function countCards(db: { query<R>(sql: string, params?: unknown[]): Promise<R[]> }, tenantId: string): Promise<number> {
  const rows = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM cards WHERE tenant_id = $1', [tenantId]);
  return rows[0]!.n;
}

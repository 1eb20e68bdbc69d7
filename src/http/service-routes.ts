// Liveness, readiness and the OpenAPI document: no authentication, no card data.
import { Router } from 'express';
import openapiDocument from './openapi.json';
import { methodNotAllowed } from './problem';

export type ReadinessCheck = () => Promise<{ ready: boolean; checks: Record<string, 'ok' | 'down' | 'degraded'> }>;

export function serviceRoutes(readiness: ReadinessCheck): Router {
  const router = Router();
  const openapi = JSON.stringify(openapiDocument);

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const result = await readiness();
    res.status(result.ready ? 200 : 503).json({ status: result.ready ? 'ready' : 'not_ready', checks: result.checks });
  });

  router.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(openapi);
  });

  for (const path of ['/healthz', '/readyz', '/openapi.json']) router.all(path, methodNotAllowed('GET, HEAD'));
  return router;
}

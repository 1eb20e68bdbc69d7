// `cardvault worker` and `cardvault updater run|status`: the account updater from an operator's shell.
import { randomUUID } from 'node:crypto';
import type { AuditTrail } from '../domain/ports';
import type { Logger } from '../log';
import { presentRun } from '../http/updater-routes';
import type { UpdaterRun, RunScope } from './model';
import { ProgressBar, type ProgressStream } from './progress-bar';
import type { PgUpdaterStore } from '../store/updater-store';
import type { UpdaterWorker } from './worker';

type Out = (line: string) => void;

const POLL_MS = 200;
const finished = (run: UpdaterRun) => run.state === 'completed' || run.state === 'failed';

/** Runs the worker until SIGTERM or SIGINT; the step in flight completes (each is one transaction) before exit. */
export async function runWorker(worker: UpdaterWorker, log: Logger): Promise<void> {
  worker.start();
  log.info({ holder: worker.holder }, 'account-updater worker started');
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
  });
  await worker.stop();
  log.info('account-updater worker stopped');
}

/**
 * Opens a run for the tenant (or joins its open one) and drives it from this process, drawing progress on
 * `progress`; another worker may hold the tenant's lock, and then this one only watches. Without `wait` it returns
 * once the run waits on a network's answer.
 */
export async function runOnce(
  parts: { store: PgUpdaterStore; worker: UpdaterWorker; audit: AuditTrail },
  tenant: { id: string; name: string },
  options: { scope: RunScope; wait: boolean },
  out: Out,
  progress: ProgressStream,
): Promise<number> {
  const { run: opened, created } = await parts.store.openRun({ id: randomUUID(), tenantId: tenant.id, trigger: 'cli', scope: options.scope, requestedBy: 'cli' });
  if (created) {
    await parts.audit.record({ tenantId: tenant.id, principal: 'cli', action: 'updater.run.start', outcome: 'success', details: { run_id: opened.id, trigger: 'cli', scope: options.scope } });
  }
  const bar = new ProgressBar(progress, `run ${opened.id.slice(0, 8)}`);
  let run = opened;
  let working: Promise<void> | undefined;
  for (;;) {
    working ??= parts.worker.tick(tenant.id).finally(() => {
      working = undefined;
    });
    await Promise.race([working, new Promise((resolve) => setTimeout(resolve, POLL_MS))]);
    run = (await parts.store.findRun(tenant.id, opened.id)) ?? run;
    bar.update(run.done, run.total);
    if (finished(run) || (!options.wait && run.state === 'awaiting_response' && working === undefined)) break;
  }
  await working;
  bar.finish();
  out(JSON.stringify(presentRun(run)));
  return run.state === 'failed' ? 1 : 0;
}

export async function runStatus(store: PgUpdaterStore, tenantId: string, runId: string, out: Out): Promise<number> {
  const run = /^[0-9a-f-]{36}$/.test(runId) ? await store.findRun(tenantId, runId) : undefined;
  if (!run) throw new Error('no such run for this tenant');
  out(JSON.stringify(presentRun(run)));
  return 0;
}

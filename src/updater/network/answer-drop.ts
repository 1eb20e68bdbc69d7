// Plays the network's side of a file drop: reads a request, answers it with the simulator, drops the response.
import type { DropFormat } from './contract';
import type { FileDropTransport } from './file-drop';
import type { NetworkSimulator } from './simulator';

/**
 * Answers `<batchId>.req` in the vault's outbox with `<batchId>.resp` in its inbox, then archives the request.
 * Returns the response's path, or undefined when there is no request for that batch (not sent, or already answered).
 */
export async function answerDrop(
  transport: FileDropTransport,
  format: DropFormat,
  batchId: string,
  simulator: NetworkSimulator,
): Promise<string | undefined> {
  const network = transport.side === 'network' ? transport : transport.counterpart();
  const request = await network.receive(batchId);
  if (request === undefined) return undefined;
  const responses = simulator.respond(format.parseInquiry(request));
  const written = await network.send(batchId, format.writeResponse(batchId, responses));
  await network.archive(batchId);
  return written;
}

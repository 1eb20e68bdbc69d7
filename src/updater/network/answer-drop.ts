// Plays the network's side of a file drop: reads a request, answers it with the simulator, drops the response.
import type { DropFormat, Inquiry, NetworkResponse } from './contract';
import type { FileDropTransport } from './file-drop';
import type { NetworkSimulator } from './simulator';

/**
 * The simulator may reissue a card without naming a new expiry, which VAU may leave out but ABU must state. A
 * reissued card that keeps its expiry has the one on file, so the answer says so, and every format can carry it.
 */
function withExpiry(response: NetworkResponse, inquiry: Inquiry): NetworkResponse {
  if (response.outcome !== 'new_account' || response.newExpMonth !== undefined || response.newExpYear !== undefined) return response;
  return { ...response, newExpMonth: inquiry.expMonth, newExpYear: inquiry.expYear };
}

/**
 * Answers `<batchId>.req` in the vault's outbox with `<batchId>.resp` in its inbox, then archives the request.
 * Returns the response's path, or undefined when there is no request for that batch (not sent, or already answered).
 * Detail records the format rejects go unanswered and the rest are still answered in a valid file, so the vault
 * sees exactly which cards were skipped.
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
  const report = format.parseInquiry(request);
  // A header naming another batch means a misplaced file: answering its cards under this batch id would mis-file them.
  const inquiries = report.batchId === batchId ? report.inquiries : [];
  const responses = simulator.respond(inquiries).map((response, i) => withExpiry(response, inquiries[i]!));
  const written = await network.send(batchId, format.writeResponse(batchId, responses));
  await network.archive(batchId);
  return written;
}

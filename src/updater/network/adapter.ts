// The network adapter port and its two implementations: a plain file drop, and a file drop the simulator answers.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { VaultError } from '../../errors';
import { abu } from '../formats/abu';
import type { BatchFormat, Inquiry, NetworkResponse } from '../formats/types';
import { vau } from '../formats/vau';
import type { NetworkName } from '../model';
import { answerDrop } from './answer-drop';
import { FileDropTransport } from './file-drop';
import type { NetworkSimulator } from './simulator';

/** What a run needs from a network: send an inquiry file, pick up its answer, and (optionally) ask about one card now. */
export interface NetworkAdapter {
  readonly network: NetworkName;
  readonly format: BatchFormat;
  send(batchId: string, fileText: string): Promise<void>;
  /** The response file for this batch once it has arrived; undefined until then. */
  receive(batchId: string): Promise<string | undefined>;
  /** Batch ids of response files waiting, including ones for batches already applied (a file dropped twice). */
  waiting(): Promise<string[]>;
  /** When the batch's response file was last written; undefined while none is waiting. */
  receivedAt(batchId: string): Promise<Date | undefined>;
  /** Deletes the batch's files on the vault's side: they hold card numbers and are no longer needed. */
  discard(batchId: string): Promise<void>;
  /**
   * Deletes the batch's request if it is still waiting for the network, and nothing else: once its run has stopped
   * waiting, a request must not sit in the drop folder, but an answer that still comes is read and applied.
   */
  withdraw(batchId: string): Promise<void>;
  /** A real-time inquiry; absent when the connection to this network is batch-only. */
  inquire?(inquiry: Inquiry): Promise<NetworkResponse>;
}

export const FORMAT_OF_NETWORK: Readonly<Record<NetworkName, BatchFormat>> = { visa: vau, mastercard: abu };

/** `<dropDir>/<network>/to-network` carries our requests, `<dropDir>/<network>/from-network` the answers. */
export function dropTransport(dropDir: string, network: NetworkName): FileDropTransport {
  return new FileDropTransport({
    outbox: path.join(dropDir, network, 'to-network'),
    inbox: path.join(dropDir, network, 'from-network'),
    side: 'vault',
  });
}

/** Batch-only: the network (an SFTP relay in production) reads the requests and writes the answers out of band. */
export class FileDropAdapter implements NetworkAdapter {
  readonly format: BatchFormat;

  constructor(
    readonly network: NetworkName,
    protected readonly transport: FileDropTransport,
  ) {
    this.format = FORMAT_OF_NETWORK[network];
  }

  async send(batchId: string, fileText: string): Promise<void> {
    await this.transport.send(batchId, fileText);
  }

  receive(batchId: string): Promise<string | undefined> {
    return this.transport.receive(batchId);
  }

  waiting(): Promise<string[]> {
    return this.transport.list();
  }

  receivedAt(batchId: string): Promise<Date | undefined> {
    return this.transport.receivedAt(batchId);
  }

  discard(batchId: string): Promise<void> {
    return this.transport.discard(batchId);
  }

  withdraw(batchId: string): Promise<void> {
    return this.transport.withdraw(batchId);
  }
}

/**
 * Development and tests: every request is answered at once by the simulator, through the same files and formats
 * as a real exchange, and the simulator's copy of the request is deleted (it holds card numbers).
 */
export class SimulatedNetworkAdapter extends FileDropAdapter {
  constructor(
    network: NetworkName,
    transport: FileDropTransport,
    private readonly simulator: NetworkSimulator,
  ) {
    super(network, transport);
  }

  override async send(batchId: string, fileText: string): Promise<void> {
    await super.send(batchId, fileText);
    await answerDrop(this.transport, this.format, batchId, this.simulator);
    await this.transport.counterpart().discard(batchId);
  }

  /** Answered as a batch of one and read back through the format, so the codes are the network's own. */
  async inquire(inquiry: Inquiry): Promise<NetworkResponse> {
    const batchId = `rt${randomBytes(9).toString('hex')}`;
    const text = this.format.writeResponse(batchId, this.simulator.respond([inquiry]));
    const [answer] = this.format.parseResponse(text).responses;
    if (!answer) throw new VaultError('network_unavailable', 'the network simulator gave no answer');
    return answer;
  }
}

/** Creates the drop folders up front (0700), so an operator can see where the exchange happens before the first run. */
export async function prepareDrop(dropDir: string): Promise<void> {
  await fs.mkdir(dropDir, { recursive: true, mode: 0o700 });
}

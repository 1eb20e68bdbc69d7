// The HTTP server for an Express app: requests and responses are created with the app's prototypes from the start.
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Express, Request, Response } from 'express';
import { VaultError, type ErrorCode } from '../errors';
import { problemBody } from './problem';

interface BornClasses {
  IncomingMessage: typeof http.IncomingMessage;
  ServerResponse: typeof http.ServerResponse;
}

const bornClasses = new WeakMap<Express, BornClasses>();

/**
 * Express gives every request and response the app's prototypes on arrival (`Object.setPrototypeOf`), which
 * leaves both objects slow in V8 for the rest of the request, inside Node's HTTP code as much as in ours. Here
 * they are born as instances of classes whose prototypes *are* the app's, so Express's call changes nothing.
 * Measured on the detokenize route with the vault's middleware and a stand-in vault: 242–285 → 90–110 µs of
 * CPU per request (README, Performance). Any other server on the same app (supertest's) works as before.
 */
export function createHttpServer(app: Express): http.Server {
  const server = http.createServer(bornClasses.get(app) ?? classesFor(app), app);
  server.on('clientError', answerClientError);
  return server;
}

/** Node's own refusals, before Express sees a request, by the parser's or the timer's error code. */
const CLIENT_ERRORS: Record<string, ErrorCode> = {
  ERR_HTTP_REQUEST_TIMEOUT: 'request_timeout',
  HPE_HEADER_OVERFLOW: 'headers_too_large',
};

/**
 * What Node answers by itself (a request not received within requestTimeout, headers over the limit, bytes that
 * are not HTTP) as problem+json with a stable code, like every other refusal, instead of a bare status line.
 * Written straight to the socket, as Node does: there is no request or response object. A socket that is gone,
 * or whose answer has already begun, is only closed.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const started = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
  if (err.code === 'ECONNRESET' || !socket.writable || started) {
    socket.destroy();
    return;
  }
  const error = new VaultError(CLIENT_ERRORS[err.code ?? ''] ?? 'invalid_request');
  const body = JSON.stringify(problemBody(error));
  socket.end(
    `HTTP/1.1 ${error.status} ${http.STATUS_CODES[error.status]}\r\nContent-Type: application/problem+json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Stops listening and drops every open connection at once: for listeners whose requests need no grace. */
export function closeNow(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function classesFor(app: Express): BornClasses {
  class AppRequest extends http.IncomingMessage {}
  class AppResponse extends http.ServerResponse {}
  // Each class's prototype takes the app's place in the chain; Express's methods stay one link up.
  Object.setPrototypeOf(AppRequest.prototype, app.request);
  Object.setPrototypeOf(AppResponse.prototype, app.response);
  app.request = AppRequest.prototype as unknown as Request;
  app.response = AppResponse.prototype as unknown as Response;
  const classes: BornClasses = { IncomingMessage: AppRequest, ServerResponse: AppResponse as typeof http.ServerResponse };
  bornClasses.set(app, classes);
  return classes;
}
